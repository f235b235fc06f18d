package reconcile

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

// The switchover's intent in the catalog record: written compare-and-set
// before anything stops, cleared by the record after the promotion or by
// a rollback, kept when the switchover stops half-way so that the next
// plan finishes it. fencedEnv: db1 primary, db2 and db3 streaming,
// cluster.hcl declaring db2, a real Redis recording db1 at generation 3.

// recordNow reads the cluster record as the catalog holds it.
func recordNow(t *testing.T, cat *redis.Catalog) *state.ClusterRecord {
	t.Helper()
	_, rec, _, err := cat.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestSwitchoverIntent(t *testing.T) {
	ctx := context.Background()

	t.Run("written before the old primary stops, cleared by the record", func(t *testing.T) {
		e, c, cat := fencedEnv(t)
		var atCheckpoint, atStop *state.ClusterRecord
		c.onCall = func(call string) {
			switch {
			case strings.HasPrefix(call, "pg.Checkpoint db1") && atCheckpoint == nil:
				atCheckpoint = recordNow(t, cat)
			case strings.HasPrefix(call, "rt.Stop db1 fast") && atStop == nil:
				atStop = recordNow(t, cat)
			}
		}
		p, err := e.Run(ctx, RunOptions{})
		if err != nil {
			t.Fatalf("switchover: %v", err)
		}
		if sw := actionOf(t, p, plan.Switchover); sw.Params.Generation != 3 || sw.Params.Resume {
			t.Fatalf("switchover params %+v, want generation 3 (the plan's), not a resume", sw.Params)
		}
		for what, rec := range map[string]*state.ClusterRecord{"checkpoint": atCheckpoint, "stop": atStop} {
			if rec == nil || rec.SwitchingTo != "db2" || rec.SwitchingFrom != "db1" || rec.SwitchingSince.IsZero() ||
				rec.Generation != 3 || rec.Primary != "db1" {
				t.Errorf("record at the %s of db1: %+v, want db1 at generation 3 with the intent db1 -> db2 and its time", what, rec)
			}
		}
		if rec := recordNow(t, cat); rec == nil || rec.Primary != "db2" || rec.Generation != 4 || rec.Switching() || !rec.SwitchingSince.IsZero() {
			t.Fatalf("record after the switchover: %+v, want db2 at generation 4 and no intent", rec)
		}
	})

	t.Run("generation moved since the plan: nothing stopped", func(t *testing.T) {
		e, c, cat := fencedEnv(t)
		newer := state.ClusterRecord{Name: e.Cfg.Name, Primary: "db1", Nodes: []string{"db1", "db2", "db3"}, Generation: 4, Event: "record"}
		if err := cat.PutRecord(ctx, newer); err != nil {
			t.Fatal(err)
		}
		a := plan.Action{ID: "switchover[db2]", Kind: plan.Switchover, Change: plan.Update, Node: "db2", Target: "db2", Primary: "db2",
			Params: plan.Params{From: "db1", Generation: 3}}
		err := e.do(ctx, a)
		var ge *GenerationMovedError
		if !errors.As(err, &ge) || ge.Expected != 3 || ge.Stored != 4 || !strings.Contains(err.Error(), "did not start (nothing was stopped)") {
			t.Fatalf("switchover planned at generation 3, record at 4: %v", err)
		}
		if c.called("pg.Checkpoint") || c.called("rt.Stop") || c.primaryRunning() != "db1" {
			t.Fatalf("the switchover started anyway (primary %q):\n%s", c.primaryRunning(), c.log())
		}
		if rec := recordNow(t, cat); rec.Switching() || rec.Generation != 4 {
			t.Fatalf("record: %+v, want generation 4 untouched", rec)
		}
	})

	t.Run("record deleted since the plan: nothing stopped", func(t *testing.T) {
		e, c, cat := fencedEnv(t)
		if err := cat.DeleteCluster(ctx); err != nil {
			t.Fatal(err)
		}
		err := e.switchover(ctx, e.Cfg.Node("db1"), e.Cfg.Node("db2"), 3)
		if !errors.Is(err, ErrGenerationMoved) || c.called("rt.Stop") {
			t.Fatalf("switchover over a deleted record: %v\n%s", err, c.log())
		}
	})

	t.Run("catalog down: nothing stopped", func(t *testing.T) {
		e, c, _ := fencedEnv(t)
		down := redis.New("127.0.0.1:1", "", 0, e.Cfg.Name)
		t.Cleanup(func() { down.Close() })
		e.Catalog, e.store = down, redisStore{down}
		err := e.switchover(ctx, e.Cfg.Node("db1"), e.Cfg.Node("db2"), 3)
		if err == nil || !strings.Contains(err.Error(), "the catalog does not answer") || c.called("rt.Stop") || c.called("pg.Checkpoint") {
			t.Fatalf("switchover without the catalog: %v\n%s", err, c.log())
		}
	})

	t.Run("rolled back: the intent is cleared", func(t *testing.T) {
		e, c, cat := fencedEnv(t)
		c.nodes["db2"].stuck = true
		err := e.switchover(ctx, e.Cfg.Node("db1"), e.Cfg.Node("db2"), 3)
		if err == nil || !strings.Contains(err.Error(), "db1 was restarted as primary") || c.primaryRunning() != "db1" {
			t.Fatalf("rollback: %v, primary %q", err, c.primaryRunning())
		}
		if rec := recordNow(t, cat); rec.Switching() || rec.Primary != "db1" || rec.Generation != 3 {
			t.Fatalf("record after the rollback: %+v, want db1 at generation 3 without intent", rec)
		}
	})

	t.Run("checkpoint fails: the intent is cleared", func(t *testing.T) {
		e, c, cat := fencedEnv(t)
		c.fail["Checkpoint db1"] = errScripted
		if err := e.switchover(ctx, e.Cfg.Node("db1"), e.Cfg.Node("db2"), 3); !errors.Is(err, errScripted) {
			t.Fatalf("switchover: %v", err)
		}
		if rec := recordNow(t, cat); rec.Switching() {
			t.Fatalf("record: %+v, want no intent", rec)
		}
	})

	t.Run("stopped half-way: the intent stays, the next apply finishes it", func(t *testing.T) {
		e, c, cat := fencedEnv(t)
		c.fail["Promote db2"] = errScripted
		if _, err := e.Run(ctx, RunOptions{}); err == nil || !strings.Contains(err.Error(), "no node takes writes until db2 is promoted") {
			t.Fatalf("first apply: %v", err)
		}
		rec := recordNow(t, cat)
		if rec.SwitchingTo != "db2" || rec.Primary != "db1" || rec.Generation != 3 || c.primaryRunning() != "" {
			t.Fatalf("after the failed promotion: record %+v, primary %q; want db1 recorded with the intent to db2, no primary", rec, c.primaryRunning())
		}
		since := rec.SwitchingSince
		delete(c.fail, "Promote db2")
		c.calls = nil
		p, err := e.Run(ctx, RunOptions{})
		if err != nil {
			t.Fatalf("second apply: %v", err)
		}
		sw := actionOf(t, p, plan.Switchover)
		if !sw.Params.Resume || !strings.Contains(sw.Reason, "begun at "+since.UTC().Format("2006-01-02 15:04:05Z")) {
			t.Fatalf("the second plan does not resume the switchover with the intent's time: %+v", sw)
		}
		if c.primaryRunning() != "db2" || c.called("rt.Start db1") && c.index("rt.Start db1") < c.index("pg.Promote db2") {
			t.Fatalf("not finished as a switchover (primary %q):\n%s", c.primaryRunning(), c.log())
		}
		if rec := recordNow(t, cat); rec.Primary != "db2" || rec.Generation != 4 || rec.Switching() {
			t.Fatalf("record: %+v, want db2 at generation 4, no intent", rec)
		}
	})

	t.Run("a stale intent is cleared, the generation kept", func(t *testing.T) {
		e, _, cat := fencedEnv(t)
		rec := *recordNow(t, cat)
		rec.SwitchingFrom, rec.SwitchingTo, rec.SwitchingSince = "db1", "db3", e.now()
		if err := cat.PutRecord(ctx, rec); err != nil {
			t.Fatal(err)
		}
		a := plan.Action{ID: "catalog.record[cluster]", Kind: plan.CatalogRecord, Change: plan.Update, Target: "cluster",
			Params: plan.Params{Primary: "db1", Nodes: []string{"db1", "db2", "db3"}, Event: "record", Generation: 3}}
		if err := e.record(ctx, a); err != nil {
			t.Fatal(err)
		}
		if got := recordNow(t, cat); got.SwitchingTo != "db3" {
			t.Fatalf("a record of the same primary without clear_intent dropped the intent: %+v", got)
		}
		a.Params.ClearIntent = true
		if err := e.record(ctx, a); err != nil {
			t.Fatal(err)
		}
		if got := recordNow(t, cat); got.Switching() || got.Generation != 3 || got.Primary != "db1" || got.Event != "record" {
			t.Fatalf("record after clearing the stale intent: %+v, want db1 at generation 3 without intent", got)
		}
	})
}

// actionOf returns the plan's one action of kind k.
func actionOf(t *testing.T, p *plan.Plan, k plan.Kind) plan.Action {
	t.Helper()
	for _, a := range p.Actions {
		if a.Kind == k {
			return a
		}
	}
	t.Fatalf("the plan has no %s action:\n%+v", k, p.Actions)
	return plan.Action{}
}
