package plan

import (
	"strings"
	"testing"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// removeDB3 takes db3 out of cluster.hcl; the runtime still finds it.
func removeDB3(c *config.Cluster, s *state.Cluster) *state.Node {
	c.Nodes = c.Nodes[:2]
	n := s.Node("db3")
	s.Nodes = s.Nodes[:2]
	s.Undeclared = []*state.Node{n}
	s.ObservedAt = tuesday
	return n
}

// After a switchover with a backup block, the plan is "No changes.": the
// timeline moved, the chain did not break.
func TestSwitchoverKeepsBackupChain(t *testing.T) {
	setCaseSecrets(t)
	p := buildCase(t, "backup_after_switchover_continues")
	if len(p.Actions) != 0 || len(p.Diagnostics) != 0 {
		t.Fatalf("after a switchover the plan is not empty: %+v %+v", p.Actions, p.Diagnostics)
	}
	p = buildCase(t, "backup_after_failover_chain_broken")
	if len(p.Actions) != 1 || !strings.Contains(p.Actions[0].Reason, "since the failover to db2 (generation 2)") {
		t.Fatalf("a broken chain after a failover: %+v", p.Actions)
	}
}

// A failover keeps the chain when the candidate received the newest
// backup's end and kept the backup slot; otherwise the failover plan
// itself takes the full, and says it was a failover.
func TestFailoverBackupChain(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stopLSN string
		slot    bool
		want    string // the full's reason, "" for no full
	}{
		{"chain continues", "0/3000100", true, ""},
		{"candidate never received the backup's end", "0/3000200", true,
			"after the failover to db2 the chain of 20261124T020500Z-full cannot continue (db2 received the WAL up to 0/3000148 only, backup 20261124T020500Z-full stops at 0/3000200): a full on the new primary starts a new chain"},
		{"candidate has no backup slot", "0/3000100", false,
			"after the failover to db2 the chain of 20261124T020500Z-full cannot continue (slot pgha_backup is missing on db2, so the WAL since 20261124T020500Z-full may be gone): a full on the new primary starts a new chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testCluster()
			s := converged(c)
			full := bk("20261124T020500Z-full", "full", "", tuesday)
			full.StopLSN = tc.stopLSN
			withBackups(c, s, tuesday.Add(3*60*60e9), full)
			stop(s.Node("db1"))
			s.Node("db2").ReceiveLSN = 0x3000148
			if !tc.slot {
				s.Node("db2").Slots = nil
			}
			p, err := BuildFailover(c, s, FailoverOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkDependencies(t, p)
			got := ""
			for _, a := range p.Actions {
				if a.Kind == BackupTake {
					got = a.Reason
					if a.After["type"] != "full" {
						t.Errorf("a %s after the failover", a.After["type"])
					}
				}
			}
			if got != tc.want {
				t.Errorf("full:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

// -delete-removed turns the removal's move aside into a deletion that
// the plan marks as discarding data; without it nothing is deleted.
func TestDeleteRemoved(t *testing.T) {
	for _, del := range []bool{false, true} {
		c := testCluster()
		s := converged(c)
		removeDB3(c, s)
		p := BuildWith(c, s, Options{DeleteRemoved: del})
		a := p.Actions[0]
		if a.ID != "node.remove[db3]" || a.DataLoss != del || p.DataLoss() != del {
			t.Fatalf("delete=%t: %+v", del, a)
		}
		if del && (a.After["data"] != "deleted" || !strings.Contains(a.Reason, "DELETE its data")) {
			t.Fatalf("delete: %+v", a)
		}
		if !del && a.After["aside"] != "/srv/pgha/data/db3.aside-20261124T020500Z" {
			t.Fatalf("move aside: %+v", a)
		}
	}
}

// A saved removal is stale once the removed node was stopped by hand.
func TestRemovalFacts(t *testing.T) {
	c := testCluster()
	s := converged(c)
	n := removeDB3(c, s)
	before := Facts(c, s)
	n.Running = false
	if moved := Moved(before, Facts(c, s)); len(moved) != 1 || moved[0] != `undeclared.db3.running: "true" → "false"` {
		t.Fatalf("moved: %q", moved)
	}
}
