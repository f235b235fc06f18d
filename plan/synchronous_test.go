package plan

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// TestSyncNames: the setting's syntax, names quoted where PostgreSQL
// would fold or refuse them.
func TestSyncNames(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		count   int
		members []string
		want    string
	}{
		{config.SyncQuorum, 1, []string{"db2", "db3"}, "ANY 1 (db2, db3)"},
		{config.SyncPriority, 2, []string{"db1", "db3", "db4"}, "FIRST 2 (db1, db3, db4)"},
		{config.SyncQuorum, 1, []string{"db-2", "DB3", "x.y"}, `ANY 1 ("db-2", "DB3", "x.y")`},
		{config.SyncQuorum, 1, nil, ""},
	} {
		if got := syncNamesOf(tc.mode, tc.count, tc.members); got != tc.want {
			t.Errorf("%s %d %v: %q, want %q", tc.mode, tc.count, tc.members, got, tc.want)
		}
	}
}

// TestSyncFailoverRestricted: a failover under synchronous replication
// promotes only a member of the recorded set, refuses when too few of it
// answer or none is recorded, and -force overrides as it does maximum_lag.
func TestSyncFailoverRestricted(t *testing.T) {
	setCaseSecrets(t)
	load := func() *goldenCase { return loadCase(t, filepath.Join(casesDir, "sync_failover.txtar")) }
	for _, tc := range []struct {
		name    string
		edit    func(s *state.Cluster)
		force   bool
		chosen  string // "" = refused
		message string // in the refusal, or in the promotion's reason
	}{
		{"both answer", func(*state.Cluster) {}, false, "db2", "the most advanced of the synchronous set of db1 (ANY 1 (db2, db3); db2, db3 answer)"},
		{"db3 not in the set", func(s *state.Cluster) { s.Catalog.Record.Sync.Standbys = []string{"db3"} }, false, "db3", "synchronous set of db1 (ANY 1 (db3); db3 answer)"},
		{"one of two down", func(s *state.Cluster) { s.Node("db3").Reachable = false }, false, "",
			"refused: the synchronous set of db1 was ANY 1 (db2, db3), and only db2 answer(s) as a standby: an acknowledged commit may be on the others alone, so 2 of them must answer"},
		{"one of two down, forced", func(s *state.Cluster) { s.Node("db3").Reachable = false }, true, "db2", "-force"},
		{"FIRST 2 of 2, one down", func(s *state.Cluster) {
			s.Catalog.Record.Sync.Count, s.Catalog.Record.Sync.Mode = 2, config.SyncPriority
			s.Node("db2").Reachable = false
		}, false, "db3", "FIRST 2 (db2, db3); db3 answer"},
		{"relaxed", func(s *state.Cluster) {
			s.Catalog.Record.Sync = &state.SyncRecord{Relaxed: true, Reason: "none of db2, db3 streams"}
		}, false, "", "refused: replication is synchronous, but db1 was relaxed to asynchronous at an unknown time (none of db2, db3 streams): no standby is known to hold every acknowledged commit; pass -force"},
		{"never confirmed", func(s *state.Cluster) { s.Catalog.Record.Sync = nil }, false, "", "the catalog records no standby confirmed synchronous with db1"},
		{"never confirmed, forced", func(s *state.Cluster) { s.Catalog.Record.Sync = nil }, true, "db2", "-force: the most advanced standby, although"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := load()
			tc.edit(pc.state)
			p, err := BuildFailover(pc.cluster, pc.state, FailoverOptions{Force: tc.force})
			if tc.chosen == "" {
				var fe *FailoverError
				if !errors.As(err, &fe) || !strings.Contains(fe.Reason, tc.message) {
					t.Fatalf("want a refusal saying %q, got %v", tc.message, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range p.Actions {
				if a.Kind == Failover {
					if a.Node != tc.chosen || !strings.Contains(a.Reason, tc.message) {
						t.Errorf("promotes %s (%s), want %s with %q", a.Node, a.Reason, tc.chosen, tc.message)
					}
					return
				}
			}
			t.Fatal("no failover action")
		})
	}
}

// TestObserveSyncBlocked: status says why writes wait.
func TestObserveSyncBlocked(t *testing.T) {
	setCaseSecrets(t)
	pc := loadCase(t, filepath.Join(casesDir, "sync_strict_blocked.txtar"))
	st := ObserveSync(pc.cluster, pc.state, "db1")
	want := "commits on db1 wait: synchronous_standby_names = 'ANY 1 (db2, db3)' needs 1 synchronous standby(s), and none of db2, db3 streams (strict = true: writes wait rather than go unprotected)"
	if st.WritesBlocked != want || !st.Declared || st.Required != 1 || len(st.Recorded) != 2 {
		t.Errorf("%+v\nwant writes_blocked %q", st, want)
	}
	pc = loadCase(t, filepath.Join(casesDir, "sync_converged.txtar"))
	if st := ObserveSync(pc.cluster, pc.state, "db1"); st.WritesBlocked != "" || len(st.Synchronous) != 2 {
		t.Errorf("converged: %+v", st)
	}
}
