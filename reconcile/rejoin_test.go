package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// afterFailover sets the model to what a failover leaves: db2 promoted
// (timeline 2), db3 streaming from it, db1 — the former primary — stopped,
// fenced (standby.signal, unless fenced is false) and diverged, with the
// slots it kept as primary.
func (c *fakeCluster) afterFailover(fenced bool) {
	c.runAs("db2")
	c.nodes["db2"].timeline = 2
	c.nodes["db3"].timeline = 2
	db1 := c.nodes["db1"]
	db1.running, db1.recovery, db1.standby, db1.diverged = false, false, fenced, true
	db1.slots = []string{"db2", "db3", config.BackupSlot}
}

// TestRejoinChoices: how a former primary comes back as a standby of
// the new primary. pg_rewind first; a re-clone only when pg_rewind says
// it can never work and both the plan and prevent_destroy allow it, and
// then the old data is moved aside, never deleted; any other failure
// stops with the data directory where it was and standby.signal as it
// was.
func TestRejoinChoices(t *testing.T) {
	const noCommonAncestor = "pg_rewind: error: could not find common ancestor of the source and target cluster's timelines"
	cases := []struct {
		name    string
		method  string
		prevent bool   // prevent_destroy on db1
		backup  string // a backup block in cluster.hcl
		version int    // db1's server version (default 16)
		fenced  bool   // db1 carries standby.signal before the rejoin
		// what pg_rewind does: nil succeeds; else fails with rewindOut
		rewindErr error
		rewindOut string
		cancel    bool // the apply is cancelled while pg_rewind runs
		checkFail bool // the checkpoint on the new primary fails

		wantErr     string // "" = success
		wantReclone bool   // data moved aside and cloned from db2
		wantStandby bool   // standby.signal after a failure
		keptSlots   []string
	}{
		{name: "rewind succeeds", method: "rewind-or-reclone", fenced: true},
		{name: "rewind succeeds, unfenced node", method: "rewind", fenced: false},
		{name: "rewind succeeds, WAL backups keep their slot", method: "rewind-or-reclone", fenced: true,
			backup: "backup {\n}", keptSlots: []string{config.BackupSlot}},
		{name: "rewind succeeds, PostgreSQL 17 keeps no backup slot", method: "rewind-or-reclone", fenced: true,
			backup: "backup {\n}", version: 170002},
		{name: "no common ancestor: re-clone", method: "rewind-or-reclone", fenced: true,
			rewindErr: errors.New("exit status 1"), rewindOut: noCommonAncestor, wantReclone: true},
		{name: "another system: re-clone", method: "rewind-or-reclone", fenced: true,
			rewindErr: errors.New("exit status 1"), rewindOut: "pg_rewind: error: source and target clusters are from different systems", wantReclone: true},
		{name: "WAL segment missing on the target: re-clone", method: "rewind-or-reclone", fenced: true,
			rewindErr: errors.New("exit status 1"), wantReclone: true,
			rewindOut: "pg_rewind: servers diverged at WAL location 0/3000060 on timeline 1\npg_rewind: error: could not open file \"/data/db1/pg_wal/000000010000000000000002\": No such file or directory"},
		{name: "re-clone with WAL backups gets a backup slot", method: "rewind-or-reclone", fenced: true, backup: "backup {\n}",
			rewindErr: errors.New("exit status 1"), rewindOut: noCommonAncestor, wantReclone: true, keptSlots: []string{config.BackupSlot}},
		{name: "the plan asks for a re-clone", method: "reclone", fenced: true, wantReclone: true},
		{name: "cannot work, but the plan allows no re-clone", method: "rewind", fenced: true,
			rewindErr: errors.New("exit status 1"), rewindOut: noCommonAncestor,
			wantErr: "the plan allows no re-clone", wantStandby: true},
		{name: "source stopped: stop, data untouched", method: "rewind-or-reclone", fenced: true,
			rewindErr: errors.New("exit status 1"), rewindOut: "pg_rewind: error: could not connect to server: connection refused",
			wantErr: "its data directory stays where it was", wantStandby: true},
		{name: "refused password: stop, data untouched", method: "rewind-or-reclone", fenced: true,
			rewindErr: errors.New("exit status 1"), rewindOut: "pg_rewind: error: FATAL:  password authentication failed for user \"postgres\"",
			wantErr: "its data directory stays where it was", wantStandby: true},
		{name: "failed rewind of an unfenced node leaves it unmarked", method: "rewind-or-reclone", fenced: false,
			rewindErr: errors.New("exit status 1"), rewindOut: "pg_rewind: error: could not connect to server",
			wantErr: "its data directory stays where it was", wantStandby: false},
		{name: "interrupted rewind: stop, no re-clone", method: "rewind-or-reclone", fenced: true,
			rewindErr: errors.New("signal: killed"), rewindOut: noCommonAncestor, cancel: true,
			wantErr: "interrupted", wantStandby: true},
		{name: "checkpoint on the new primary fails", method: "rewind-or-reclone", fenced: true, checkFail: true,
			wantErr: "db1's data is untouched", wantStandby: true},
		{name: "prevent_destroy: cannot work, never moved aside", method: "rewind", prevent: true, fenced: true,
			rewindErr: errors.New("exit status 1"), rewindOut: noCommonAncestor,
			wantErr: "prevent_destroy = true, so pgha does not replace its data", wantStandby: true},
		{name: "prevent_destroy wins over a plan that allows a re-clone", method: "rewind-or-reclone", prevent: true, fenced: true,
			rewindErr: errors.New("exit status 1"), rewindOut: noCommonAncestor,
			wantErr: "prevent_destroy = true, so pgha does not replace its data", wantStandby: true},
		{name: "prevent_destroy refuses a planned re-clone", method: "reclone", prevent: true, fenced: true,
			wantErr: "re-clone of db1 refused", wantStandby: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodeExtra := map[string]string{}
			if tc.prevent {
				nodeExtra["db1"] = "    prevent_destroy = true"
			}
			e, c := fakeEnv(t, "db2", tc.backup, nodeExtra)
			c.afterFailover(tc.fenced)
			if tc.version != 0 {
				for _, n := range c.nodes {
					n.version = tc.version
				}
			}
			if tc.rewindErr != nil {
				c.fail["Rewind db1"], c.rewindOut = tc.rewindErr, tc.rewindOut
			}
			if tc.checkFail {
				c.fail["Checkpoint db2"] = errScripted
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				c.onCall = func(call string) {
					if strings.HasPrefix(call, "rt.Rewind") {
						cancel()
					}
				}
			}
			db1 := c.nodes["db1"]

			err := e.rejoin(ctx, e.Cfg.Node("db1"), e.Cfg.Node("db2"), tc.method)

			// Whatever happened: nothing deleted, one primary.
			for _, del := range []string{"rt.Destroy", "rt.RemoveAside"} {
				if c.called(del) {
					t.Errorf("rejoin called %s", del)
				}
			}
			if p := c.primaryRunning(); p != "db2" {
				t.Errorf("primary after the rejoin: %q, want db2", p)
			}
			// A node that was not fenced keeps no mark after a failure (a
			// foreign data directory is not written into); the planner
			// fences every former primary before it rejoins it.
			wantPrimaries := []string{"db2"}
			if !tc.fenced && err != nil {
				wantPrimaries = []string{"db1", "db2"}
			}
			if got := c.wouldStartPrimary(); !slices.Equal(got, wantPrimaries) {
				t.Errorf("nodes a restart brings up as primary: %v, want %v", got, wantPrimaries)
			}
			if c.called("pg.Checkpoint db2") != (tc.method != "reclone") {
				t.Errorf("checkpoint on db2 before pg_rewind: called %v, method %s", c.called("pg.Checkpoint db2"), tc.method)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("rejoin error: %v, want one saying %q", err, tc.wantErr)
				}
				if c.called("rt.MoveAside") || c.called("rt.Clone") {
					t.Errorf("a failed rejoin moved or cloned data")
				}
				if !db1.data || len(db1.aside) != 0 || db1.running {
					t.Errorf("db1 after a failed rejoin: data %v, aside %v, running %v; want its data in place and stopped", db1.data, db1.aside, db1.running)
				}
				if db1.standby != tc.wantStandby {
					t.Errorf("db1's standby.signal after a failed rejoin: %v, want %v (as it was)", db1.standby, tc.wantStandby)
				}
				return
			}
			if err != nil {
				t.Fatalf("rejoin: %v", err)
			}
			// db1 follows the new primary on its timeline.
			if !db1.running || !db1.recovery || !db1.standby || !c.streams(db1) || db1.timeline != 2 {
				t.Errorf("db1 after the rejoin: running %v, in recovery %v, standby.signal %v, streams %v, timeline %d; want a streaming standby on timeline 2",
					db1.running, db1.recovery, db1.standby, c.streams(db1), db1.timeline)
			}
			if tc.wantReclone {
				if len(db1.aside) != 1 {
					t.Errorf("db1's data moved aside: %v, want one directory", db1.aside)
				}
				c.before("rt.MoveAside db1", "rt.Clone db1 from db2")
				c.before("rt.Clone db1", "rt.Start db1")
			} else {
				if c.called("rt.MoveAside") || c.called("rt.Clone") {
					t.Errorf("a rejoin by pg_rewind moved or cloned data")
				}
				if len(db1.aside) != 0 {
					t.Errorf("db1's data moved aside: %v", db1.aside)
				}
				// pg_rewind runs on a stopped node without standby.signal
				// (its single-user recovery refuses it), after the checkpoint.
				c.before("rt.Stop db1", "rt.Rewind db1 from db2")
				c.before("pg.Checkpoint db2", "rt.Rewind db1")
				c.before("rt.SetStandby db1 false", "rt.Rewind db1")
				c.before("rt.Rewind db1", "rt.SetStandby db1 true")
			}
			c.before("rt.SetStandby db1 true", "rt.Start db1")
			c.before("rt.Start db1", "pg.WaitStreaming db1")
			if !slices.Equal(db1.slots, tc.keptSlots) {
				t.Errorf("db1's slots after the rejoin: %v, want %v", db1.slots, tc.keptSlots)
			}
		})
	}
}

// A re-clone whose clone fails leaves the old data aside, where the next
// plan's re-clone finds an empty data directory: nothing is deleted and
// nothing starts.
func TestRejoinCloneFailsKeepsAside(t *testing.T) {
	e, c := fakeEnv(t, "db2", "", nil)
	c.afterFailover(true)
	c.fail["Rewind db1"], c.rewindOut = errors.New("exit status 1"), "pg_rewind: error: source and target clusters are from different systems"
	c.fail["Clone db1"] = errScripted

	err := e.rejoin(context.Background(), e.Cfg.Node("db1"), e.Cfg.Node("db2"), "rewind-or-reclone")

	if !errors.Is(err, errScripted) {
		t.Fatalf("rejoin error: %v, want the clone's", err)
	}
	db1 := c.nodes["db1"]
	if db1.data || len(db1.aside) != 1 || db1.running {
		t.Errorf("db1 after a failed re-clone: data %v, aside %v, running %v; want its old data aside and nothing running", db1.data, db1.aside, db1.running)
	}
	if c.called("rt.Start db1") || c.called("rt.Destroy") || c.called("rt.RemoveAside") {
		t.Errorf("a failed re-clone started db1 or deleted data")
	}
	if p := c.primaryRunning(); p != "db2" {
		t.Errorf("primary: %q, want db2", p)
	}
}

// forkFacts is pgdata.ForkScript's output for a former primary on
// timeline 1 with its latest checkpoint at ckpt (redo 0x10 before it),
// whose WAL does (wrote) or does not go past the fork at 0/3000000.
func forkFacts(ckpt string, wrote bool) string {
	probe := "rc=1: pg_waldump: error: could not find a valid record after 0/3000000"
	if wrote {
		probe = "rc=0: rmgr: Heap len (rec/tot): 54/54, tx: 750, lsn: 0/3000000"
	}
	redo, _ := strconv.ParseUint(strings.TrimPrefix(ckpt, "0/"), 16, 32)
	return fmt.Sprintf(`Database cluster state:               in production
Latest checkpoint location:           %s
Latest checkpoint's REDO location:    0/%X
Latest checkpoint's TimeLineID:       1
pgha-history-files:
pgha-waldump 1 0/3000000 %s
`, ckpt, redo-0x10, probe)
}

// TestRejoinFork: a former primary whose WAL ends at the fork starts as a
// standby without pg_rewind (and without the checkpoint pg_rewind needs);
// one that wrote past it is rewound, with the source's wal_keep_size
// trimmed for the checkpoint before pg_rewind and written back after it,
// unless another standby does not stream through its slot. A start
// without pg_rewind that does not stream falls back to pg_rewind.
func TestRejoinFork(t *testing.T) {
	for _, tc := range []struct {
		name      string
		facts     string
		diverged  bool // what the model says, whatever the facts
		db3NoSlot bool // db3 streams from db2 without its slot there
		wantWind  bool // pg_rewind ran
		wantKeeps []string
	}{
		{name: "WAL ends at the fork: started as it is", facts: forkFacts("0/2FFFF00", false)},
		{name: "the start does not stream: stopped and rewound", facts: forkFacts("0/2FFFF00", false), diverged: true,
			wantWind: true, wantKeeps: []string{"32MB", "128MB"}},
		{name: "wrote past the fork: rewound with wal_keep_size trimmed", facts: forkFacts("0/2FFFF00", true), diverged: true,
			wantWind: true, wantKeeps: []string{"32MB", "128MB"}},
		{name: "checkpoint after the fork: rewound, nothing trimmed", facts: forkFacts("0/3000100", true), diverged: true,
			wantWind: true},
		{name: "db3 without its slot: rewound, nothing trimmed", facts: forkFacts("0/2FFFF00", true), diverged: true, db3NoSlot: true,
			wantWind: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, c := fakeEnv(t, "db2", "", nil)
			c.afterFailover(true)
			db1, db2 := c.nodes["db1"], c.nodes["db2"]
			db1.diverged, db1.forkOut = tc.diverged, tc.facts
			db2.history = []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x3000000}}
			db2.lsn = 0x3100000
			db2.slots = []string{"db1", "db3"}
			if tc.db3NoSlot {
				db2.slots = []string{"db1"}
			}

			if err := e.rejoin(context.Background(), e.Cfg.Node("db1"), e.Cfg.Node("db2"), "rewind-or-reclone"); err != nil {
				t.Fatalf("rejoin: %v", err)
			}
			if !c.streams(db1) {
				t.Errorf("db1 does not stream after the rejoin")
			}
			if c.called("rt.Rewind db1") != tc.wantWind || c.called("pg.Checkpoint db2") != tc.wantWind {
				t.Errorf("pg_rewind called %v, checkpoint on db2 called %v; want %v", c.called("rt.Rewind db1"), c.called("pg.Checkpoint db2"), tc.wantWind)
			}
			c.before("rt.ForkFacts db1", "rt.Start db1")
			if !slices.Equal(db2.keeps, tc.wantKeeps) {
				t.Errorf("db2's wal_keep_size as configured: %q, want %q", db2.keeps, tc.wantKeeps)
			}
			if len(tc.wantKeeps) > 0 {
				c.before("rt.Configure db2", "pg.Checkpoint db2")
				if db2.keepAtRewind != tc.wantKeeps[0] {
					t.Errorf("db2's wal_keep_size during pg_rewind: %q, want %q", db2.keepAtRewind, tc.wantKeeps[0])
				}
			}
		})
	}
}
