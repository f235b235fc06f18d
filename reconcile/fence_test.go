package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// fencedEnv is the fake cluster (db1 primary, db2 and db3 streaming) with
// cluster.hcl declaring db2 primary, and a real Redis catalog recording
// db1 at generation 3: an apply switches over to db2 and records it.
func fencedEnv(t *testing.T) (*Env, *fakeCluster, *redis.Catalog) {
	t.Helper()
	r := testenv.StartRedis(t)
	e, c := fakeEnv(t, "db2", fmt.Sprintf("  catalog \"redis\" {\n    address = %q\n  }", r.Addr), nil)
	c.runAs("db1")
	cat := redis.New(r.Addr, "", 0, e.Cfg.Name)
	t.Cleanup(func() { cat.Close() })
	e.Catalog, e.store = cat, redisStore{cat}
	if err := cat.PutRecord(context.Background(), state.ClusterRecord{Name: e.Cfg.Name, Primary: "db1",
		Nodes: []string{"db1", "db2", "db3"}, Generation: 3, Event: "record"}); err != nil {
		t.Fatal(err)
	}
	return e, c, cat
}

// TestRecordFencedByGeneration: a switchover planned at generation 3
// records db2 at generation 4. If another pgha moves the record on while
// it runs (here: during the promotion), its catalog.record fails with
// ErrGenerationMoved naming both generations, and the newer record stays.
func TestRecordFencedByGeneration(t *testing.T) {
	ctx := context.Background()

	t.Run("generation unchanged: recorded", func(t *testing.T) {
		e, _, cat := fencedEnv(t)
		p, err := e.Run(ctx, RunOptions{})
		if err != nil {
			t.Fatalf("switchover: %v", err)
		}
		ra := recordAction(t, p)
		if ra.Params.Generation != 3 {
			t.Fatalf("catalog.record params %+v, want the generation the plan saw (3)", ra.Params)
		}
		if _, rec, _, _ := cat.Observe(ctx); rec == nil || rec.Primary != "db2" || rec.Generation != 4 || rec.Event != "switchover" {
			t.Fatalf("record after the switchover: %+v, want db2 at generation 4", rec)
		}
	})

	t.Run("generation moved during the apply: refused", func(t *testing.T) {
		e, c, cat := fencedEnv(t)
		newer := state.ClusterRecord{Name: e.Cfg.Name, Primary: "db3", Nodes: []string{"db1", "db2", "db3"}, Generation: 4, Event: "failover"}
		c.onCall = func(call string) {
			if strings.HasPrefix(call, "pg.Promote db2") {
				if err := cat.PutRecord(ctx, newer); err != nil {
					t.Error(err)
				}
			}
		}
		p, err := e.Run(ctx, RunOptions{})
		var ae *report.ApplyError
		var ge *GenerationMovedError
		if !errors.As(err, &ae) || ae.Failed != recordAction(t, p).ID || !errors.Is(err, ErrGenerationMoved) ||
			!errors.As(err, &ge) || ge.Expected != 3 || ge.Stored != 4 {
			t.Fatalf("apply whose generation moved: %v", err)
		}
		for _, want := range []string{"made at generation 3", "at generation 4 now", "plan again"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if _, rec, _, _ := cat.Observe(ctx); rec == nil || rec.Primary != "db3" || rec.Generation != 4 {
			t.Fatalf("the newer record was overwritten: %+v", rec)
		}
		h, err := cat.History(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range h {
			if ev.Generation == 5 || (ev.Kind == "switchover" && strings.Contains(ev.Message, "primary db2, nodes")) {
				t.Fatalf("history records the refused write: %+v", ev)
			}
		}
	})

	t.Run("record deleted meanwhile: refused", func(t *testing.T) {
		e, _, cat := fencedEnv(t)
		a := plan.Action{ID: "catalog.record[cluster]", Kind: plan.CatalogRecord, Change: plan.Update, Target: "cluster",
			Params: plan.Params{Primary: "db1", Nodes: []string{"db1", "db2"}, Event: "record", Generation: 3}}
		if err := cat.DeleteCluster(ctx); err != nil {
			t.Fatal(err)
		}
		err := e.record(ctx, a)
		if !errors.Is(err, ErrGenerationMoved) || !strings.Contains(err.Error(), "holds no record now") {
			t.Fatalf("record over a deleted record: %v", err)
		}
		if _, rec, _, _ := cat.Observe(ctx); rec != nil {
			t.Fatalf("a record was written: %+v", rec)
		}
	})

	t.Run("forced failover: recorded over the newer generation", func(t *testing.T) {
		e, c, cat := fencedEnv(t)
		c.runAs("db2") // a forced failover promoted db2
		a := plan.Action{ID: "catalog.record[cluster]", Kind: plan.CatalogRecord, Change: plan.Update, Target: "cluster",
			Params: plan.Params{Primary: "db2", Nodes: []string{"db1", "db2", "db3"}, Event: "failover", Generation: 2, Force: true}}
		if err := e.record(ctx, a); err != nil {
			t.Fatalf("forced record: %v", err)
		}
		if _, rec, _, _ := cat.Observe(ctx); rec == nil || rec.Primary != "db2" || rec.Generation != 4 {
			t.Fatalf("forced record: %+v, want db2 at generation 4", rec)
		}
	})
}

func recordAction(t *testing.T, p *plan.Plan) plan.Action {
	t.Helper()
	if p == nil {
		t.Fatal("no plan")
	}
	for _, a := range p.Actions {
		if a.Kind == plan.CatalogRecord {
			return a
		}
	}
	t.Fatalf("the plan records nothing:\n%+v", p.Actions)
	return plan.Action{}
}
