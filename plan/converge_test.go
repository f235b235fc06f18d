package plan

import (
	"slices"
	"strings"
	"testing"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// Cases of issue 9's "one apply converges": role changes, slot renames
// and removed nodes are finished by the plan that starts them.
func init() { planCases = append(planCases, convergeCases...) }

// switchedOver is the converged cluster after a switchover from db1 to
// db2, cluster.hcl edited to match: db2 is primary on timeline 2, db1
// and db3 follow it, the catalog recorded the switchover.
func switchedOver(c *config.Cluster, s *state.Cluster) {
	c.Primary = "db2"
	for _, cn := range c.Nodes {
		n := s.Node(cn.Name)
		n.Settings = settingsOf(c, cn)
		n.Timeline = 2
		if cn.Name == "db2" {
			n.InRecovery, n.StandbySignal, n.Upstream = false, false, nil
			n.CurrentLSN, n.ReceiveLSN, n.ReplayLSN = 0x3000300, 0, 0
			n.History = []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x3000200}}
			n.Slots = []state.Slot{{Name: "db1", Type: "physical", Active: true, ActivePID: 300, RestartLSN: 0x3000300},
				{Name: "db3", Type: "physical", Active: true, ActivePID: 301, RestartLSN: 0x3000300}}
			continue
		}
		n.InRecovery, n.StandbySignal, n.CurrentLSN = true, true, 0
		n.ReceiveLSN, n.ReplayLSN = 0x3000300, 0x3000300
		n.Upstream = &state.Upstream{Status: "streaming", Host: "127.0.0.1", Port: 5442, Slot: cn.Name}
		n.Slots = nil
	}
	s.Catalog.Record = &state.ClusterRecord{Name: "demo", Primary: "db2", Nodes: []string{"db1", "db2", "db3"}, Generation: 2, Timeline: 2, Event: "switchover"}
}

// removeDB3 takes db3 out of cluster.hcl; the runtime still finds it.
func removeDB3(c *config.Cluster, s *state.Cluster) *state.Node {
	c.Nodes = c.Nodes[:2]
	n := s.Node("db3")
	s.Nodes = s.Nodes[:2]
	s.Undeclared = []*state.Node{n}
	s.ObservedAt = tuesday
	return n
}

// pg17 makes every node PostgreSQL 17 with block-level backups: no
// backup slot anywhere, summarize_wal as given on the standby db2.
func pg17(s *state.Cluster, db2Summarizes string) {
	for _, n := range s.Nodes {
		n.ServerVersion = 170004
		n.Slots = slices.DeleteFunc(n.Slots, func(sl state.Slot) bool { return sl.Name == config.BackupSlot })
		n.Settings["summarize_wal"] = state.Setting{Value: "on", VarType: "bool", Context: "sighup"}
	}
	s.Node("db2").Settings["summarize_wal"] = state.Setting{Value: db2Summarizes, VarType: "bool", Context: "sighup"}
	for i := range s.Backups {
		s.Backups[i].Format, s.Backups[i].ServerManifest = "base", "backup_manifest"
	}
}

var convergeCases = []planCase{
	{name: "backup_standby_recloned", mutate: func(c *config.Cluster, s *state.Cluster) {
		// db3 lost its data: the clone gets the backup slot in the same
		// plan, as every standby has.
		withBackups(c, s, tuesday, bk("20261124T020500Z-full", "full", "", tuesday))
		s.Node("db1").Slots = append(s.Node("db1").Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
		n := s.Node("db3")
		*n = state.Node{Name: "db3", Host: n.Host, Port: n.Port, DataDir: n.DataDir, Error: "not running"}
		s.Node("db1").Slots[1].Active = false
	}, ids: []string{"standby.clone[db3]", "node.start[db3]", "slot.create[db3/pgha_backup]"}},
	{name: "backup_slot_holds_wal_on_standby", mutate: func(c *config.Cluster, s *state.Cluster) {
		// Backups stopped being taken: the standby's slot holds its WAL
		// as the primary's does, and the plan says so.
		withBackups(c, s, tuesday, bk("20261124T020500Z-full", "full", "", tuesday))
		s.Node("db1").Slots = append(s.Node("db1").Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
		s.Node("db1").CurrentLSN = 0x2_03000148
		s.Node("db2").ReplayLSN = 0x2_03000148
	}, diags: []string{"slot pgha_backup holds 8.0 GiB of WAL on db1 since 0/3000100", "slot pgha_backup holds 8.0 GiB of WAL on standby db2 since 0/3000100"}},
	{name: "backup_after_switchover_pg17_continues", mutate: func(c *config.Cluster, s *state.Cluster) {
		// PostgreSQL 17: db2 summarized the WAL as a standby; the chain
		// of block-level incrementals continues on timeline 2.
		switchedOver(c, s)
		withBackups(c, s, tuesday.Add(3*60*60e9), bk("20261124T020500Z-full", "full", "", tuesday))
		pg17(s, "on")
	}},
	{name: "switchover_pg17_no_summaries", mutate: func(c *config.Cluster, s *state.Cluster) {
		// db2 never summarized the WAL: the switchover plan takes the
		// full the new primary's chain starts from.
		withBackups(c, s, tuesday.Add(3*60*60e9), bk("20261124T020500Z-full", "full", "", tuesday))
		pg17(s, "off")
		c.Primary = "db2"
	}, ids: []string{"switchover[db2]", "slot.create[db2/db1]", "slot.create[db2/db3]", "standby.rejoin[db1]", "standby.follow[db3]", "backup.take[full]", "catalog.record[cluster]"},
		diags: []string{"db1 is the writable primary, cluster.hcl declares db2"}},
	{name: "node_removed", mutate: func(c *config.Cluster, s *state.Cluster) {
		// node "db3" was deleted from cluster.hcl while it streams from
		// db1 through slot db3: it is stopped, its data moved aside, and
		// its slot dropped after it.
		removeDB3(c, s)
	}, ids: []string{"node.remove[db3]", "slot.drop[db1/db3]", "catalog.record[cluster]"}},
	{name: "node_removed_stopped", mutate: func(c *config.Cluster, s *state.Cluster) {
		stop(removeDB3(c, s))
		s.Node("db1").Slots[1].Active = false
	}, ids: []string{"node.remove[db3]", "slot.drop[db1/db3]", "catalog.record[cluster]"}},
	{name: "node_removed_docker", mutate: func(c *config.Cluster, s *state.Cluster) {
		dockerize(c, s)
		n := removeDB3(c, s)
		// Docker: found by its container's labels; PostgreSQL is not asked.
		*n = state.Node{Name: "db3", DataDir: "volume pgha-demo-db3", DirExists: true, Initialized: true, Running: true,
			Container: &state.Container{Name: "pgha-demo-db3", Running: true, Image: "postgres:17"}}
		// The primary's WAL sender for db3 holds slot db3.
		s.Node("db1").Replicas[1].PID = 201
	}, ids: []string{"node.remove[db3]", "slot.drop[db1/db3]", "catalog.record[cluster]"}},
	{name: "node_removed_foreign", mutate: func(c *config.Cluster, s *state.Cluster) {
		// A data directory under data_dir that pgha did not make for this
		// cluster: listed, never stopped or moved.
		n := removeDB3(c, s)
		n.DataForeign = "/srv/pgha/data/db3 belongs to cluster \"other\" (see pgha.marker), not \"demo\"; pgha deletes only its own data directories"
	}, ids: []string{"catalog.record[cluster]"}, diags: []string{"undeclared slot db3 on db1 is in use (pid 201)", "db3 is not in cluster.hcl, and pgha cannot tell it is one of this cluster's nodes"}},
	{name: "node_removed_writable", mutate: func(c *config.Cluster, s *state.Cluster) {
		n := removeDB3(c, s)
		n.InRecovery, n.Upstream, n.Timeline = false, nil, 2
		s.Node("db1").Slots[1].Active = false
	}, ids: []string{"slot.drop[db1/db3]", "catalog.record[cluster]"}, diags: []string{"db3 is not in cluster.hcl but accepts writes"}},
	{name: "node_removed_not_answering", mutate: func(c *config.Cluster, s *state.Cluster) {
		// Running, asked, no answer: it may be a primary with clients, so
		// it is neither stopped nor moved.
		n := removeDB3(c, s)
		*n = state.Node{Name: "db3", Host: n.Host, Port: n.Port, DataDir: n.DataDir, DirExists: true, Initialized: true, Running: true,
			Error: "connect to 127.0.0.1:5443: too many clients already"}
	}, ids: []string{"catalog.record[cluster]"}, diags: []string{"undeclared slot db3 on db1 is in use (pid 201)", "db3 is not in cluster.hcl, runs, and does not answer"}},
	{name: "slot_renamed", mutate: func(c *config.Cluster, s *state.Cluster) {
		// node "db2" { slot = "db2" } became slot = "db2_new": one plan
		// creates the new slot, re-points db2, then drops the old one.
		c.Node("db2").Slot = "db2_new"
	}, ids: []string{"slot.create[db1/db2_new]", "standby.follow[db2]", "slot.drop[db1/db2]"}},
	{name: "slot_renamed_standby_down", mutate: func(c *config.Cluster, s *state.Cluster) {
		// The standby does not answer: nothing re-points it, its old
		// slot stays (in use) and the plan says why.
		c.Node("db2").Slot = "db2_new"
		n := s.Node("db2")
		n.Reachable, n.Error = false, "connection refused"
	}, ids: []string{"slot.create[db1/db2_new]"}, diags: []string{"undeclared slot db2 on db1 is in use by db2 (pid 200)", "standby db2 is running but does not answer"}},
	{name: "backup_after_switchover_continues", mutate: func(c *config.Cluster, s *state.Cluster) {
		// The full and an incremental were taken on timeline 1; db2 was
		// promoted after them and kept the backup slot as a standby: the
		// chain continues, nothing is due before Wednesday's tick.
		switchedOver(c, s)
		withBackups(c, s, tuesday.Add(3*60*60e9),
			bk("20261123T020500Z-full", "full", "", tuesday.AddDate(0, 0, -1)),
			bk("20261124T020500Z-incremental", "incremental", "20261123T020500Z-full", tuesday))
		s.Node("db2").Slots = append(s.Node("db2").Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
	}},
	{name: "backup_after_failover_chain_broken", mutate: func(c *config.Cluster, s *state.Cluster) {
		// A failover promoted db2 before it received the end of the
		// newest backup: the chain cannot continue, a full is due now.
		switchedOver(c, s)
		s.Catalog.Record.Event = "failover"
		withBackups(c, s, tuesday.Add(3*60*60e9), bk("20261124T020500Z-full", "full", "", tuesday))
		full := &s.Backups[0]
		full.StopLSN = "0/3000280"
		s.Node("db2").Slots = append(s.Node("db2").Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
	}, ids: []string{"backup.take[full]"}},
	{name: "backup_after_switchover_slot_too_new", mutate: func(c *config.Cluster, s *state.Cluster) {
		// db2's backup slot was made after the newest backup: the WAL
		// between them may be gone there.
		switchedOver(c, s)
		withBackups(c, s, tuesday.Add(3*60*60e9), bk("20261124T020500Z-full", "full", "", tuesday))
		s.Node("db2").Slots = append(s.Node("db2").Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000200})
	}, ids: []string{"backup.take[full]"}},
	{name: "switchover_backup_continues", mutate: func(c *config.Cluster, s *state.Cluster) {
		// The switchover plan itself: db2 holds the WAL since the newest
		// backup, so no full is planned with it.
		withBackups(c, s, tuesday.Add(3*60*60e9), bk("20261124T020500Z-full", "full", "", tuesday))
		s.Node("db1").Slots = append(s.Node("db1").Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
		c.Primary = "db2"
	}, ids: []string{"switchover[db2]", "slot.create[db2/db1]", "slot.create[db2/db3]", "standby.rejoin[db1]", "standby.follow[db3]", "catalog.record[cluster]"},
		diags: []string{"db1 is the writable primary, cluster.hcl declares db2"}},
	{name: "switchover_backup_needs_full", mutate: func(c *config.Cluster, s *state.Cluster) {
		// db2 has no backup slot (it was cloned before backups were
		// declared and never observed since): the plan that changes the
		// timeline takes the full the new primary's chain needs.
		withBackups(c, s, tuesday.Add(3*60*60e9), bk("20261124T020500Z-full", "full", "", tuesday))
		s.Node("db1").Slots = append(s.Node("db1").Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
		s.Node("db2").Slots = nil
		c.Primary = "db2"
	}, ids: []string{"switchover[db2]", "slot.create[db2/pgha_backup]", "slot.create[db2/db1]", "slot.create[db2/db3]", "standby.rejoin[db1]", "standby.follow[db3]", "backup.take[full]", "catalog.record[cluster]"},
		diags: []string{"db1 is the writable primary, cluster.hcl declares db2"}},
}

// After a switchover with a backup block, the plan is "No changes.": the
// timeline moved, the chain did not break.
func TestSwitchoverKeepsBackupChain(t *testing.T) {
	byName := map[string]planCase{}
	for _, pc := range convergeCases {
		byName[pc.name] = pc
	}
	c := testCluster()
	s := converged(c)
	byName["backup_after_switchover_continues"].mutate(c, s)
	p := Build(c, s)
	if len(p.Actions) != 0 || len(p.Diagnostics) != 0 {
		t.Fatalf("after a switchover the plan is not empty: %+v %+v", p.Actions, p.Diagnostics)
	}
	c = testCluster()
	s = converged(c)
	byName["backup_after_failover_chain_broken"].mutate(c, s)
	p = Build(c, s)
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
