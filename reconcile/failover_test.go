package reconcile

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

// A failover planned at one generation must not promote when the catalog
// has moved on (another pgha acted meanwhile), unless forced.
func TestFailoverRefusesNewerGeneration(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	cat := redis.New(r.Addr, "", 0, "gen")
	defer cat.Close()
	if err := cat.PutRecord(ctx, state.ClusterRecord{Name: "gen", Primary: "db2", Generation: 5}); err != nil {
		t.Fatal(err)
	}
	node := &config.Node{Name: "db3", Host: "127.0.0.1", Port: testenv.FreePort(t)}
	e := &Env{Cfg: &config.Cluster{Name: "gen", Primary: "db1", Nodes: []*config.Node{node},
		Postgres: config.Postgres{Superuser: "postgres", Password: config.NewSecret("x")}}, Catalog: cat, store: redisStore{cat}}
	// Before and After are display text apply does not read: here they
	// say generation 5 and -force, and the params, which it does read,
	// say otherwise.
	a := plan.Action{Kind: plan.Failover, Node: "db3", Before: map[string]string{"primary": "db1", "generation": "5"}, After: map[string]string{"force": "true"},
		Params: plan.Params{Generation: 4}}

	err := e.failover(ctx, a, node)
	if !errors.Is(err, ErrGenerationMoved) || !strings.Contains(err.Error(), "the catalog is at generation 5, the plan was made at 4") {
		t.Fatalf("a stale failover was not refused: %v", err)
	}
	// A catalog that does not answer cannot say the generation did not
	// move: nothing is promoted without it.
	down := redis.New("127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)), "", 0, "gen")
	defer down.Close()
	ed := *e
	ed.Catalog, ed.store = down, redisStore{down}
	err = ed.failover(ctx, plan.Action{Kind: plan.Failover, Node: "db3", Params: plan.Params{Generation: 5}}, node)
	if err == nil || !strings.Contains(err.Error(), "the catalog does not answer") || !strings.Contains(err.Error(), "nothing promoted") {
		t.Fatalf("a failover without its catalog was not refused: %v", err)
	}
	// Forced, it goes on to promote (which fails here: nothing listens).
	a.Params.Force = true
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err = e.failover(fctx, a, node)
	if err == nil || strings.Contains(err.Error(), "generation") {
		t.Fatalf("-force did not skip the generation check: %v", err)
	}
}

func TestBuildStatusLag(t *testing.T) {
	c := &config.Cluster{Name: "s", Primary: "db1", Nodes: []*config.Node{{Name: "db1", Port: 1}, {Name: "db2", Port: 2, Slot: "db2"}}}
	s := &state.Cluster{Nodes: []*state.Node{
		{Name: "db1", Reachable: true, Running: true, CurrentLSN: 0x3000100, Timeline: 1,
			Replicas: []state.Replica{{ApplicationName: "db2", ReplayLag: 1500 * time.Millisecond}}},
		{Name: "db2", Reachable: true, Running: true, InRecovery: true, ReplayLSN: 0x3000000, Timeline: 1,
			Upstream: &state.Upstream{Status: "streaming", Host: "10.0.0.1", Port: 5432, Slot: "db2"}},
	}}
	st := BuildStatus(c, s)
	d2 := st.Nodes[1]
	if d2.Role != "standby" || d2.LagBytes == nil || *d2.LagBytes != 0x100 || *d2.LagSeconds != 1.5 || !d2.Streaming || d2.Upstream != "10.0.0.1:5432" {
		t.Fatalf("standby status: %+v", d2)
	}
	if st.Nodes[0].Role != "primary" || st.Nodes[0].LSN != "0/3000100" {
		t.Fatalf("primary status: %+v", st.Nodes[0])
	}
}

// Without a catalog, applies still exclude each other through a file lock.
func TestFileLockWithoutCatalog(t *testing.T) {
	dir := t.TempDir()
	e := &Env{Cfg: &config.Cluster{Name: "nocat", Dir: dir}}
	ctx := context.Background()
	var out strings.Builder
	first, err := e.Lock(ctx, "apply", 0, &out)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Lock(ctx, "apply", 200*time.Millisecond, &out)
	if err == nil || !strings.Contains(err.Error(), `operation "apply"`) {
		t.Fatalf("second lock: %v", err)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := e.Lock(ctx, "apply", 0, &out)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Release(ctx)
}

// Only pg_rewind's messages for a rewind that can never work lead to a
// re-clone; an interrupted or unreachable rewind stops instead.
func TestRewindCannotWork(t *testing.T) {
	for _, tc := range []struct {
		out, why string
	}{
		{"pg_rewind: error: source and target clusters are from different systems", "another system identifier"},
		{"pg_rewind: error: could not find common ancestor of the source and target cluster's timelines", "no common timeline"},
		{`pg_rewind: error: could not open file "/srv/data/db1/pg_wal/000000010000000000000003": No such file or directory`, "WAL missing"},
		{"pg_rewind: error: could not find previous WAL record at 0/3000060", "WAL missing on the target"},
		{`pg_rewind: error: connection to server at "127.0.0.1", port 5442 failed: Connection refused`, ""},
		{`pg_rewind: error: connection to server at "127.0.0.1", port 5442 failed: FATAL:  password authentication failed for user "postgres"`, ""},
		{"signal: killed", ""},
		{`pg_rewind: error: could not fetch remote file "global/pg_control": server closed the connection unexpectedly`, ""},
	} {
		why, cannot := rewindCannotWork(tc.out)
		if why != tc.why || cannot != (tc.why != "") {
			t.Errorf("%q: got %q %v, want %q", tc.out, why, cannot, tc.why)
		}
	}
}

// The catalog records a new primary only once it is seen writable: a
// record planned for a node that does not answer leaves the catalog as it
// was, and says why.
func TestRecordOnlyWhatHappened(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	cat := redis.New(r.Addr, "", 0, "rec")
	defer cat.Close()
	if err := cat.PutRecord(ctx, state.ClusterRecord{Name: "rec", Primary: "db2", Nodes: []string{"db1", "db2"}, Generation: 4, Rejoin: []string{"db1"}}); err != nil {
		t.Fatal(err)
	}
	db1 := &config.Node{Name: "db1", Host: "127.0.0.1", Port: testenv.FreePort(t)}
	db2 := &config.Node{Name: "db2", Host: "127.0.0.1", Port: testenv.FreePort(t)}
	e := &Env{Cfg: &config.Cluster{Name: "rec", Primary: "db1", Nodes: []*config.Node{db1, db2},
		Postgres: config.Postgres{Superuser: "postgres", Password: config.NewSecret("x")}}, Catalog: cat, store: redisStore{cat}}
	a := plan.Action{Kind: plan.CatalogRecord, Change: plan.Update, Target: "cluster", Reason: "record the switchover from db2 to db1 as generation 5",
		After:  map[string]string{"primary": "db1", "nodes": "db1,db2", "generation": "5", "event": "switchover"},
		Params: plan.Params{Primary: "db1", Nodes: []string{"db1", "db2"}, Event: "switchover"}}
	err := e.record(ctx, a)
	if err == nil || err.Error() != "the catalog keeps its record: db1 does not answer, so it is not recorded as primary" {
		t.Fatalf("record of a primary nobody observed: %v", err)
	}
	_, rec, _, err := cat.Observe(ctx)
	if err != nil || rec.Primary != "db2" || rec.Generation != 4 {
		t.Fatalf("the record changed: %+v %v", rec, err)
	}
	events, err := cat.History(ctx, 10)
	if err != nil || len(events) != 0 {
		t.Fatalf("history written for a role change that did not happen: %+v %v", events, err)
	}
}
