package plan

import (
	"strings"
	"testing"

	"github.com/pgha/pgha/config"
)

// watchPolicy is a cluster with the watch defaults, changed by f.
func watchPolicy(f func(c *config.Cluster)) *config.Cluster {
	c := &config.Cluster{Name: "t", Primary: "db1",
		Failover: config.Failover{Automatic: true, Failback: "manual", PrimaryCrash: "restart", MaximumLag: 16 << 20},
		Watch:    config.Watch{Heal: true, Rejoin: "rewind", Config: "apply"}}
	if f != nil {
		f(c)
	}
	return c
}

func TestPermit(t *testing.T) {
	manualFailover := func(c *config.Cluster) { c.Failover.Automatic = false }
	noHeal := func(c *config.Cluster) { c.Watch.Heal = false }
	manualRejoin := func(c *config.Cluster) { c.Watch.Rejoin = "manual" }
	planOnly := func(c *config.Cluster) { c.Watch.Config = "plan" }
	autoFailback := func(c *config.Cluster) { c.Failover.Failback = "automatic" }
	edited := Situation{Edited: true}
	primaryEdited := Situation{Edited: true, PrimaryEdited: true}
	for _, tc := range []struct {
		name   string
		policy func(*config.Cluster)
		a      Action
		s      Situation
		want   bool
		reason string // a part of the reason
	}{
		{"failover by default", nil, Action{Kind: Failover, DataLoss: true}, Situation{}, true, "automatic = true"},
		{"failover when not automatic", manualFailover, Action{Kind: Failover}, Situation{}, false, "pgha failover"},
		{"fence follows failover policy", manualFailover, Action{Kind: NodeFence}, Situation{}, false, "automatic = false"},
		{"fence by default", nil, Action{Kind: NodeFence}, Situation{}, true, ""},

		{"start a stopped node", nil, Action{Kind: NodeStart}, Situation{}, true, "heal = true"},
		{"start held without heal", noHeal, Action{Kind: NodeStart}, Situation{}, false, "heal = false"},
		{"recreate container", nil, Action{Kind: NodeReplace}, Situation{}, true, ""},
		{"re-point standby", nil, Action{Kind: StandbyFollow}, Situation{}, true, ""},
		{"re-point held without heal", noHeal, Action{Kind: StandbyFollow}, Situation{}, false, "heal"},
		{"recreate slot", nil, Action{Kind: SlotCreate}, Situation{}, true, ""},
		{"due backup", nil, Action{Kind: BackupTake}, Situation{}, true, ""},
		{"expire backups", nil, Action{Kind: BackupExpire}, Situation{}, true, ""},
		{"start catalog", nil, Action{Kind: CatalogStart}, Situation{}, true, ""},
		{"heal held after an edit in plan mode", planOnly, Action{Kind: NodeStart}, edited, false, `config = "plan"`},
		{"heal in plan mode without an edit", planOnly, Action{Kind: NodeStart}, Situation{}, true, ""},

		{"rejoin by rewind", nil, Action{Kind: StandbyRejoin, DataLoss: true, Params: Params{Method: "rewind-or-reclone"}}, Situation{}, true, "rewind"},
		{"rejoin manual", manualRejoin, Action{Kind: StandbyRejoin, Params: Params{Method: "rewind"}}, Situation{}, false, "manual"},
		{"re-clone only", nil, Action{Kind: StandbyRejoin, Params: Params{Method: "reclone"}}, Situation{}, false, "re-clone"},

		{"failback manual", nil, Action{Kind: Switchover}, Situation{}, false, "failback"},
		{"failback automatic", autoFailback, Action{Kind: Switchover}, Situation{}, true, "failback"},
		{"edited primary, apply", nil, Action{Kind: Switchover}, primaryEdited, true, "edited"},
		{"edited primary, plan", planOnly, Action{Kind: Switchover}, primaryEdited, false, "plan"},
		{"interrupted switchover", manualFailover, Action{Kind: Switchover, Params: Params{Resume: true}}, Situation{}, true, "interrupted"},
		{"switchover begun, interrupted before it stopped anything", manualFailover, Action{Kind: Switchover, Params: Params{Intended: true}}, Situation{}, true, "its intent is in the catalog"},

		{"settings", nil, Action{Kind: SettingsUpdate}, Situation{}, true, "apply"},
		{"settings in plan mode", planOnly, Action{Kind: SettingsUpdate}, Situation{}, false, "plan"},
		{"restart in plan mode", planOnly, Action{Kind: NodeRestart}, Situation{}, false, "plan"},
		{"remove node aside", nil, Action{Kind: NodeRemove}, Situation{}, true, ""},

		{"delete set-aside data", nil, Action{Kind: DataRemove}, Situation{}, false, "deletes data"},
		{"destroy node", nil, Action{Kind: NodeDestroy}, Situation{}, false, "deletes data"},
		{"destroy catalog", nil, Action{Kind: CatalogDestroy}, Situation{}, false, "deletes data"},
		{"remove and delete", nil, Action{Kind: NodeRemove, Params: Params{DeleteData: true}}, Situation{}, false, "deletes data"},
		{"other data loss", nil, Action{Kind: StandbyClone, DataLoss: true}, Situation{}, false, "lose data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := PermitIn(watchPolicy(tc.policy), tc.a, tc.s)
			if ok != tc.want || !strings.Contains(why, tc.reason) || why == "" {
				t.Errorf("PermitIn(%s) = %v, %q; want %v, reason containing %q", tc.a.Kind, ok, why, tc.want, tc.reason)
			}
		})
	}
}

// TestPermitCoversEveryKind: every kind gets a decision with a reason, so
// that a kind added later is classified on purpose rather than by falling
// through to "config".
func TestPermitCoversEveryKind(t *testing.T) {
	for _, k := range Kinds {
		if _, why := Permit(watchPolicy(nil), Action{Kind: k}); why == "" {
			t.Errorf("%s: no reason", k)
		}
	}
	if len(Kinds) != 29 {
		t.Errorf("%d kinds: classify the new ones in PermitIn (healing or config) and update this count", len(Kinds))
	}
}

func TestFilter(t *testing.T) {
	p := &Plan{Actions: []Action{
		{ID: "node.fence[db1]", Kind: NodeFence},
		{ID: "failover[db2]", Kind: Failover, DependsOn: []string{"node.fence[db1]"}},
		{ID: "standby.rejoin[db3]", Node: "db3", Kind: StandbyRejoin, Params: Params{Method: "rewind"}, DependsOn: []string{"failover[db2]"}},
		{ID: "node.start[db3]", Node: "db3", Kind: NodeStart, DependsOn: []string{"standby.rejoin[db3]"}},
		{ID: "catalog.record[cluster]", Kind: CatalogRecord, Params: Params{Primary: "db2", Rejoin: []string{"db1"}},
			DependsOn: []string{"node.fence[db1]", "failover[db2]", "standby.rejoin[db3]", "node.start[db3]"}},
	}}
	run, held := Filter(watchPolicy(func(c *config.Cluster) { c.Watch.Rejoin = "manual" }), p, Situation{})
	var ids []string
	for _, a := range run.Actions {
		ids = append(ids, a.ID)
	}
	if got := strings.Join(ids, " "); got != "node.fence[db1] failover[db2] catalog.record[cluster]" {
		t.Fatalf("runs %s", got)
	}
	if len(held) != 2 || held[1].Action.ID != "node.start[db3]" || !strings.Contains(held[1].Reason, "standby.rejoin[db3]") {
		t.Fatalf("held %+v", held)
	}
	rec := run.Actions[2]
	if strings.Join(rec.Params.Rejoin, ",") != "db1,db3" || rec.After["rejoin"] != "db1,db3" || len(rec.DependsOn) != 2 {
		t.Fatalf("record %+v", rec)
	}
	if p.Actions[4].Params.Rejoin[0] != "db1" || len(p.Actions[4].Params.Rejoin) != 1 {
		t.Fatal("Filter changed the plan it was given")
	}

	// A held failover holds the record: nothing changed roles.
	run, _ = Filter(watchPolicy(func(c *config.Cluster) { c.Failover.Automatic = false }), p, Situation{})
	if len(run.Actions) != 0 {
		t.Fatalf("with failover held, runs %v", run.Actions)
	}
}
