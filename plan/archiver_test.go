package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// TestArchivers: which archivers warn, and what the warning names. The
// case file archiver_failing.txtar shows a whole plan.
func TestArchivers(t *testing.T) {
	now := time.Date(2026, 11, 24, 2, 5, 0, 0, time.UTC)
	ok := now.Add(-15 * time.Minute)
	bad := now.Add(-30 * time.Second)
	for _, tc := range []struct {
		name     string
		standby  bool
		archiver *state.Archiver
		want     []string // substrings of summary + detail; nil: no warning
	}{
		{name: "not observed"},
		{name: "archiving off", archiver: &state.Archiver{Mode: "off"}},
		{name: "healthy", archiver: &state.Archiver{Mode: "on", ArchivedCount: 9, LastArchivedWAL: "000000010000000000000009", LastArchivedTime: ok}},
		{name: "recovered after failures", archiver: &state.Archiver{Mode: "on", ArchivedCount: 9, LastArchivedTime: bad.Add(time.Second),
			FailedCount: 4, LastFailedWAL: "000000010000000000000009", LastFailedTime: bad}},
		{name: "failing after a success", archiver: &state.Archiver{Mode: "on", ArchivedCount: 9, LastArchivedWAL: "000000010000000000000008",
			LastArchivedTime: ok, FailedCount: 4, LastFailedWAL: "000000010000000000000009", LastFailedTime: bad},
			want: []string{"WAL archiving fails on db1: 000000010000000000000009 is not archived, nothing archived since 2026-11-24 01:50:00Z",
				"the last file archived was 000000010000000000000008, 15m0s before this observation",
				"the last time at 2026-11-24 02:04:30Z (4 failures", "pgha's backups do not wait for the archiver", "pg_wal grows"}},
		{name: "never succeeded", archiver: &state.Archiver{Mode: "on", FailedCount: 3, LastFailedWAL: "000000010000000000000001", LastFailedTime: bad},
			want: []string{"WAL archiving fails on db1: 000000010000000000000001 is not archived, nothing archived yet",
				"3 failures and no file archived since its statistics were reset, the last failure at 2026-11-24 02:04:30Z",
				"keeps every WAL file from 000000010000000000000001 on in pg_wal"}},
		{name: "standby whose archiver does not run", standby: true, archiver: &state.Archiver{Mode: "on", FailedCount: 3,
			LastFailedWAL: "000000010000000000000001", LastFailedTime: bad}},
		{name: "standby archiving always", standby: true, archiver: &state.Archiver{Mode: "always", FailedCount: 3,
			LastFailedWAL: "000000010000000000000001", LastFailedTime: bad},
			want: []string{"WAL archiving fails on db1: 000000010000000000000001 is not archived"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &config.Cluster{Nodes: []*config.Node{{Name: "db1"}}}
			s := &state.Cluster{ObservedAt: now, Nodes: []*state.Node{{Name: "db1", Reachable: true, InRecovery: tc.standby, Archiver: tc.archiver}}}
			b := &builder{c: c, s: s, p: &Plan{}}
			b.archivers()
			if tc.want == nil {
				if len(b.p.Diagnostics) != 0 {
					t.Fatalf("want no warning, got %+v", b.p.Diagnostics)
				}
				return
			}
			if len(b.p.Diagnostics) != 1 || b.p.Diagnostics[0].Severity != Warning || b.p.Diagnostics[0].Node != "db1" {
				t.Fatalf("want one warning on db1, got %+v", b.p.Diagnostics)
			}
			text := b.p.Diagnostics[0].Summary + "\n" + b.p.Diagnostics[0].Detail
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("warning lacks %q:\n%s", w, text)
				}
			}
		})
	}
}
