package reconcile

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestSwitchoverRollback: a switchover either ends with the target
// promoted after it replayed the old primary's shutdown checkpoint, or
// the old primary runs as primary again and the error says so. At no
// point do two primaries run, and nothing that a restart would bring up
// as a second primary is left behind.
func TestSwitchoverRollback(t *testing.T) {
	cases := []struct {
		name   string
		resume bool // the plan resumes an interrupted switchover
		// setup changes the model (db1 primary, db2 and db3 streaming)
		// and scripts failures before the switchover runs.
		setup func(c *fakeCluster, cancel context.CancelFunc)

		wantErr     []string // "" = success
		wantPrimary string   // the running primary afterwards, "" = none
		// wantMarked: the nodes a restart would bring up as primary
		wantMarked []string
		noStart    bool // the old primary is never started
		// promoteTried: a promotion was asked for, and failed
		promoteTried bool
	}{
		{name: "switches over", wantPrimary: "db2", wantMarked: []string{"db2"}, noStart: true},
		{name: "target does not catch up: rolled back",
			setup:   func(c *fakeCluster, _ context.CancelFunc) { c.nodes["db2"].stuck = true },
			wantErr: []string{"db2 did not replay db1's final LSN 0/3000028", "db1 was restarted as primary, nothing changed"},
			// db2 keeps no mark of its own: it runs in recovery, so its
			// standby.signal is there.
			wantPrimary: "db1", wantMarked: []string{"db1"}},
		{name: "control data unreadable: rolled back",
			setup:       func(c *fakeCluster, _ context.CancelFunc) { c.fail["ControlData db1"] = errScripted },
			wantErr:     []string{"scripted failure", "db1 was restarted as primary, nothing changed"},
			wantPrimary: "db1", wantMarked: []string{"db1"}},
		{name: "checkpoint fails: nothing stopped",
			setup:       func(c *fakeCluster, _ context.CancelFunc) { c.fail["Checkpoint db1"] = errScripted },
			wantErr:     []string{"scripted failure"},
			wantPrimary: "db1", wantMarked: []string{"db1"}, noStart: true},
		{name: "clean stop fails: left running",
			setup:       func(c *fakeCluster, _ context.CancelFunc) { c.fail["Stop db1"] = errScripted },
			wantErr:     []string{"stop db1 cleanly"},
			wantPrimary: "db1", wantMarked: []string{"db1"}, noStart: true},
		{name: "cancelled while stopping: rolled back on a context the cancel does not end",
			setup: func(c *fakeCluster, cancel context.CancelFunc) {
				c.fail["Stop db1"] = context.Canceled
				c.onCall = func(call string) {
					if strings.HasPrefix(call, "rt.Stop db1") {
						c.nodes["db1"].running = false // it went down meanwhile
						cancel()
					}
				}
			},
			wantErr:     []string{"stop db1 cleanly", "db1 was restarted as primary, nothing changed"},
			wantPrimary: "db1", wantMarked: []string{"db1"}},
		{name: "rollback fails too: both said, no primary promoted",
			setup: func(c *fakeCluster, _ context.CancelFunc) {
				c.nodes["db2"].stuck = true
				c.fail["Start db1"] = errScripted
			},
			wantErr:     []string{"did not replay", "restarting db1 as primary also failed: scripted failure"},
			wantPrimary: "", wantMarked: []string{"db1"}},
		{name: "marking the old primary fails: rolled back, nothing promoted",
			setup:       func(c *fakeCluster, _ context.CancelFunc) { c.fail["SetStandby db1 true"] = errScripted },
			wantErr:     []string{"mark db1 a standby before promoting db2: scripted failure", "db1 was restarted as primary, nothing changed"},
			wantPrimary: "db1", wantMarked: []string{"db1"}},
		{name: "cancelled once the target caught up: the promotion finishes",
			setup: func(c *fakeCluster, cancel context.CancelFunc) {
				c.onCall = func(call string) {
					if strings.HasPrefix(call, "rt.SetStandby db1 true") {
						cancel()
					}
				}
			},
			wantPrimary: "db2", wantMarked: []string{"db2"}, noStart: true},
		{name: "promote fails: the old primary stays fenced, the error says no node takes writes",
			setup:       func(c *fakeCluster, _ context.CancelFunc) { c.fail["Promote db2"] = errScripted },
			wantErr:     []string{"scripted failure", "db1 is stopped and marked a standby, so no node takes writes until db2 is promoted"},
			wantPrimary: "", wantMarked: nil, noStart: true, promoteTried: true},
		{name: "resumed after a clean shutdown: promoted",
			resume: true,
			setup: func(c *fakeCluster, _ context.CancelFunc) {
				_ = fakeRuntime{c}.Stop(context.Background(), c.cfg.Node("db1"), "fast")
			},
			wantPrimary: "db2", wantMarked: []string{"db2"}, noStart: true},
		{name: "resumed after a crash: started, switched over from the start",
			resume: true,
			setup: func(c *fakeCluster, _ context.CancelFunc) {
				_ = fakeRuntime{c}.Stop(context.Background(), c.cfg.Node("db1"), "immediate")
			},
			wantPrimary: "db2", wantMarked: []string{"db2"}},
		{name: "resumed, target does not catch up: rolled back",
			resume: true,
			setup: func(c *fakeCluster, _ context.CancelFunc) {
				c.nodes["db2"].stuck = true
				_ = fakeRuntime{c}.Stop(context.Background(), c.cfg.Node("db1"), "fast")
			},
			wantErr:     []string{"did not replay", "db1 was restarted as primary, nothing changed"},
			wantPrimary: "db1", wantMarked: []string{"db1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, c := fakeEnv(t, "db2", "", nil)
			c.runAs("db1")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.setup != nil {
				tc.setup(c, cancel)
			}
			c.calls = nil
			old, target := e.Cfg.Node("db1"), e.Cfg.Node("db2")

			var err error
			if tc.resume {
				err = e.resumeSwitchover(ctx, old, target)
			} else {
				err = e.switchover(ctx, old, target, 0)
			}

			if p := c.primaryRunning(); p != tc.wantPrimary {
				t.Errorf("running primary: %q, want %q", p, tc.wantPrimary)
			}
			if got := c.wouldStartPrimary(); !slices.Equal(got, tc.wantMarked) {
				t.Errorf("nodes a restart brings up as primary: %v, want %v", got, tc.wantMarked)
			}
			if c.called("rt.Start db1") == tc.noStart {
				t.Errorf("db1 started: %v, want %v", c.called("rt.Start db1"), !tc.noStart)
			}
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("switchover: %v", err)
				}
				// Promoted only once it replayed db1's shutdown checkpoint,
				// and db1 marked a standby before.
				c.before("rt.Stop db1 fast", "pg.WaitReplayed db2 0/3000028")
				c.before("pg.WaitReplayed db2", "rt.SetStandby db1 true")
				c.before("rt.SetStandby db1 true", "pg.Promote db2")
				if n := c.nodes["db2"]; n.timeline != 2 {
					t.Errorf("db2's timeline after its promotion: %d", n.timeline)
				}
				return
			}
			if err == nil {
				t.Fatalf("switchover succeeded, want an error saying %q", tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if c.called("pg.Promote") != tc.promoteTried {
				t.Errorf("promotion asked for: %v, want %v", c.called("pg.Promote"), tc.promoteTried)
			}
			if c.nodes["db2"].timeline != 1 || !c.nodes["db2"].standby {
				t.Errorf("db2 after a failed switchover: timeline %d, standby.signal %v; want it a standby as before", c.nodes["db2"].timeline, c.nodes["db2"].standby)
			}
		})
	}
}
