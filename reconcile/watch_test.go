package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	goredis "github.com/redis/go-redis/v9"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

// watchLog is a JSON decision log a test reads back.
type watchLog struct{ bytes.Buffer }

func (l *watchLog) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records are the log's records whose msg is msg.
func (l *watchLog) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(l.String()) { // none in an empty log
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not a JSON record: %q", line)
		}
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// watcherOn is a watcher over the fake three-node cluster with db1 as
// primary, running; extra goes inside the cluster block.
func watcherOn(t *testing.T, extra string) (*Watcher, *fakeCluster, *watchLog) {
	t.Helper()
	e, c := fakeEnv(t, "db1", extra, nil)
	c.runAs("db1")
	e.pg = convergedPG{fakePG{c}}
	// Converge first (slots), as pgha apply would have.
	if _, err := e.Run(context.Background(), RunOptions{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	c.calls = nil
	log := &watchLog{}
	return &Watcher{Env: e, Log: log.logger()}, c, log
}

// convergedPG is the fake servers, observed with the facts the fake
// does not model and a converged cluster has: the replication role as
// declared, and each standby's primary_conninfo, slot and WAL receiver
// pointing at the running primary.
type convergedPG struct{ fakePG }

func (p convergedPG) Observe(ctx context.Context, ep postgres.Endpoint, sn *state.Node, roles map[string]string) {
	p.fakePG.Observe(ctx, ep, sn, roles)
	if !sn.Reachable {
		return
	}
	sn.Roles = map[string]state.DBRole{p.cfg.Replication.User: {CanLogin: true, Replication: true, PasswordMatches: true}}
	if cn, primary := p.cfg.Node(ep.Name), p.primaryRunning(); cn != nil && sn.InRecovery && primary != "" {
		want := plan.DesiredSettings(p.cfg, cn, primary)
		if sn.Upstream != nil {
			sn.Upstream.Host, sn.Upstream.Port = p.cfg.PeerEndpoint(p.cfg.Node(primary))
		}
		sn.Settings = map[string]state.Setting{
			"primary_conninfo":  {Value: want["primary_conninfo"]},
			"primary_slot_name": {Value: want["primary_slot_name"]},
		}
	}
}

// ticks runs n iterations and returns the last outcome.
func ticks(w *Watcher, n int) Outcome {
	var out Outcome
	for range n {
		out = w.Tick(context.Background())
	}
	return out
}

// A primary whose process died, with primary_crash = "failover", is
// failed over at the first check that sees it: the runtime reports the
// crash and the standbys confirm they no longer hear it.
func TestWatchFailsOverLostPrimary(t *testing.T) {
	w, c, log := watcherOn(t, "failover {\n primary_crash = \"failover\"\n}")
	if out := w.Tick(context.Background()); !out.Converged {
		t.Fatalf("a running cluster is not converged: %+v", out)
	}
	c.node("db1").running = false
	out := w.Tick(context.Background())
	if out.Err != nil {
		t.Fatalf("failover: %v\n%s", out.Err, log.String())
	}
	if p := c.primaryRunning(); p != "db2" && p != "db3" {
		t.Fatalf("no new primary: %q", p)
	}
	lost := log.records(t, "primary lost")
	fo := log.records(t, "failover")
	if len(lost) != 1 || lost[0]["node"] != "db1" || len(fo) != 1 || fo[0]["from"] != "db1" {
		t.Fatalf("lost %v failover %v", lost, fo)
	}
	against, _ := fo[0]["reasons_against"].(map[string]any)
	other := map[string]string{"db2": "db3", "db3": "db2"}[fmt.Sprint(fo[0]["to"])]
	if len(against) != 1 || !strings.HasPrefix(fmt.Sprint(against[other]), "received ") || !strings.HasSuffix(fmt.Sprint(against[other]), "db1 does not answer)") {
		t.Errorf("the other standby is not named with a reason: %v", fo[0])
	}
	if len(log.records(t, "apply")) != 1 {
		t.Errorf("no apply record:\n%s", log.String())
	}
}

// cutOffPG is convergedPG where pgha cannot reach some servers that
// still run: a blip between the watcher and them alone.
type cutOffPG struct {
	convergedPG
	cut map[string]bool
}

func (p cutOffPG) Observe(ctx context.Context, ep postgres.Endpoint, sn *state.Node, roles map[string]string) {
	if p.cut[ep.Name] {
		sn.Error = "dial tcp: i/o timeout"
		return
	}
	p.convergedPG.Observe(ctx, ep, sn, roles)
}

// A primary pgha cannot reach while its standbys still stream from it is
// suspect, never lost: no failover however long it lasts.
func TestWatchBlipIsNotFailover(t *testing.T) {
	w, c, log := watcherOn(t, "failover {\n primary_crash = \"failover\"\n}")
	w.Env.pg = cutOffPG{convergedPG{fakePG{c}}, map[string]bool{"db1": true}}
	ticks(w, 6)
	if c.called("pg.Promote") || c.called("rt.Stop") || len(log.records(t, "primary lost")) != 0 {
		t.Fatalf("a blip was failed over:\n%s", log.String())
	}
	susp := log.records(t, "primary suspect")
	if len(susp) != 6 || !strings.Contains(fmt.Sprint(susp[5]["reason"]), "still streams") {
		t.Fatalf("suspect records: %v", susp)
	}
}

// With automatic = false, a lost primary is held by policy: nothing is
// promoted, and the hold is said once, not at every check.
func TestWatchHoldsFailoverWhenNotAutomatic(t *testing.T) {
	w, c, log := watcherOn(t, "failover {\n automatic = false\n primary_crash = \"failover\"\n}")
	c.node("db1").running = false
	out := ticks(w, 5)
	if c.called("pg.Promote") || c.called("rt.Stop") || out.Held != 1 {
		t.Fatalf("acted without automatic failover: %+v\n%s", out, c.log())
	}
	held := log.records(t, "held by policy")
	if len(held) != 1 || !strings.Contains(fmt.Sprint(held[0]["reason"]), "automatic = false") {
		t.Fatalf("held records: %v", held)
	}
}

// A crashed primary with primary_crash = "restart" (the default) is
// started again in place: no promotion, nothing lost.
func TestWatchRestartsCrashedPrimary(t *testing.T) {
	w, c, log := watcherOn(t, "")
	c.node("db1").running = false
	out := ticks(w, 3)
	if out.Err != nil || c.primaryRunning() != "db1" || c.called("pg.Promote") {
		t.Fatalf("not restarted in place: %+v primary %q\n%s", out, c.primaryRunning(), log.String())
	}
	if r := log.records(t, "restart in place"); len(r) != 1 || r[0]["node"] != "db1" {
		t.Fatalf("restart records: %v", r)
	}
	if len(log.records(t, "failover")) != 0 {
		t.Fatal("failed over instead")
	}
}

// hungThenDetector calls db1 lost by failures in a row while its process
// runs (the runtime saw it alive), and lost with its process dead once it
// no longer runs: a hung primary that may crash between two checks.
type hungThenDetector struct{}

func (hungThenDetector) Check(c *config.Cluster, s *state.Cluster, primary string, probe error) Verdict {
	if s.Node("db1").Running {
		return Verdict{Node: "db1", Lost: true, Reason: "db1 is unreachable, 3 checks in a row", Failures: 3, Threshold: 3}
	}
	return Verdict{Node: "db1", Lost: true, Reason: "db1's server process is gone", Failures: 1, Threshold: 3, ProcessDead: true}
}

// With primary_crash = "restart", a primary lost by failures in a row
// while its process was seen alive is asked about once more before a
// failover: crashed meanwhile, it is restarted in place; still hung, it is
// failed over at the next check.
func TestWatchRechecksLostPrimaryBeforeFailover(t *testing.T) {
	w, c, log := watcherOn(t, "")
	w.Detector = hungThenDetector{}
	if out := w.Tick(context.Background()); out.Err != nil || c.called("pg.Promote") || c.primaryRunning() != "db1" {
		t.Fatalf("failed over at the first lost verdict with the process seen alive: %+v\n%s", out, log.String())
	}
	if r := log.records(t, "lost recheck"); len(r) != 1 || !w.recheck {
		t.Fatalf("no recheck asked: %v (recheck %v)\n%s", r, w.recheck, log.String())
	}
	c.node("db1").running = false // it crashes between the two checks
	ticks(w, 2)
	if c.called("pg.Promote") || c.primaryRunning() != "db1" || len(log.records(t, "restart in place")) != 1 {
		t.Fatalf("a crash seen at the recheck was not restarted in place: primary %q\n%s", c.primaryRunning(), log.String())
	}

	w, c, log = watcherOn(t, "")
	w.Detector = hungThenDetector{}
	ticks(w, 2) // still hung at the recheck: a failover is tried (which
	// the fake's db1, answering, refuses: it does not model a hang)
	tried := false
	for _, r := range log.records(t, "apply") {
		tried = tried || r["operation"] == "failover"
	}
	if !tried {
		t.Fatalf("no failover tried after the recheck of a primary still seen alive:\n%s", log.String())
	}
	if len(log.records(t, "lost recheck")) != 1 {
		t.Fatalf("want one recheck:\n%s", log.String())
	}
}

// A primary whose restart keeps failing is restarted at each check until
// the restart window ends, then failed over, and the reason says so.
func TestWatchFailsOverWhenRestartFails(t *testing.T) {
	w, c, log := watcherOn(t, "")
	now := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	w.Now = func() time.Time { return now }
	c.node("db1").running = false
	c.fail["Start db1"] = errScripted
	for range 3 {
		w.Tick(context.Background())
		now = now.Add(time.Second)
	}
	if c.primaryRunning() != "" || strings.Count(c.log(), "rt.Start db1") != 3 {
		t.Fatalf("not restarted at each check within the window:\n%s", c.log())
	}
	now = now.Add(restartWindow(w.Env.Cfg))
	w.Tick(context.Background())
	if p := c.primaryRunning(); p != "db2" && p != "db3" {
		t.Fatalf("no failover after the window: %q\n%s", p, log.String())
	}
	fo := log.records(t, "failover")
	if len(fo) != 1 || !strings.Contains(fmt.Sprint(fo[0]["reason"]), "did not bring db1 back within 10s (last attempt: node.start[db1]") {
		t.Fatalf("failover records: %v", fo)
	}
}

// A stopped standby is started again (heal), and with watch.heal =
// false it is held.
func TestWatchHealsStoppedStandby(t *testing.T) {
	w, c, log := watcherOn(t, "")
	c.node("db3").running = false
	if out := w.Tick(context.Background()); out.Err != nil || !c.node("db3").running {
		t.Fatalf("standby not restarted: %+v\n%s", out, log.String())
	}
	if len(log.records(t, "heal")) == 0 {
		t.Fatalf("no heal record:\n%s", log.String())
	}

	w, c, log = watcherOn(t, "watch {\n heal = false\n}")
	c.node("db3").running = false
	if out := w.Tick(context.Background()); out.Held == 0 || c.node("db3").running {
		t.Fatalf("heal = false, yet: %+v", out)
	}
	if len(log.records(t, "held by policy")) == 0 {
		t.Fatal("nothing said held")
	}
}

// While someone's apply holds the cluster lock, the watcher says who and
// waits; once it is free, it acts.
func TestWatchWaitsForLock(t *testing.T) {
	w, c, log := watcherOn(t, "failover {\n primary_crash = \"failover\"\n}")
	lease, err := w.Env.Lock(context.Background(), "apply", 0, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c.node("db1").running = false
	ticks(w, 4)
	if c.called("pg.Promote") || len(log.records(t, "lock busy")) != 1 {
		t.Fatalf("acted under another's lock, or did not say so once:\n%s", log.String())
	}
	lease.Release(context.Background())
	w.Tick(context.Background())
	if p := c.primaryRunning(); p != "db2" && p != "db3" {
		t.Fatalf("no failover once the lock was free: %q\n%s", p, log.String())
	}
}

// With the catalog away the watcher never promotes: it says so, once,
// and keeps observing.
func TestWatchCatalogDownNeverPromotes(t *testing.T) {
	port := testenv.FreePort(t)
	w, c, log := watcherOn(t, fmt.Sprintf("catalog \"redis\" {\n address = \"127.0.0.1:%d\"\n}\nfailover {\n primary_crash = \"failover\"\n}", port))
	w.Env.Catalog = redis.New(fmt.Sprintf("127.0.0.1:%d", port), "", 0, "fake")
	w.Env.store = redisStore{w.Env.Catalog}
	c.node("db1").running = false
	ticks(w, 5)
	if c.called("pg.Promote") || c.called("rt.Stop") || c.called("rt.Start") {
		t.Fatalf("acted without the catalog:\n%s", c.log())
	}
	r := log.records(t, "catalog unreachable")
	if len(r) != 1 || r[0]["primary_lost"] != true {
		t.Fatalf("catalog records: %v\n%s", r, log.String())
	}
}

// After a failover the catalog goes away and the new primary dies: the
// watcher watches the primary it last knew (not cluster.hcl's, now a
// standby), sees it lost, and says why it does not promote.
func TestWatchCatalogDownWatchesLastKnownPrimary(t *testing.T) {
	r := testenv.StartRedis(t)
	w, c, log := watcherOn(t, fmt.Sprintf("catalog \"redis\" {\n address = %q\n}\nfailover {\n primary_crash = \"failover\"\n}", r.Addr))
	attachCatalog(w.Env, r.Addr)
	ticks(w, 2)
	c.node("db1").running = false
	ticks(w, 3)
	p := c.primaryRunning()
	if p != "db2" && p != "db3" {
		t.Fatalf("no failover: %q\n%s", p, log.String())
	}
	ticks(w, 2)
	r.Stop()
	c.node(p).running = false
	c.calls = nil
	ticks(w, 5)
	if c.called("pg.Promote") || c.called("rt.Start") {
		t.Fatalf("acted without the catalog:\n%s", c.log())
	}
	rs := log.records(t, "catalog unreachable")
	if len(rs) == 0 {
		t.Fatalf("no catalog unreachable record:\n%s", log.String())
	}
	last := rs[len(rs)-1]
	if last["primary"] != p || last["primary_lost"] != true {
		t.Fatalf("catalog unreachable records %v: want the lost primary %s\n%s", rs, p, log.String())
	}
}

// A failover whose history entry the catalog refuses (the history key
// is not a list) is done all the same, and the decision log says what
// the history lacks: the watcher drops executors' notes, not these.
func TestWatchLogsHistoryNotTaken(t *testing.T) {
	r := testenv.StartRedis(t)
	w, c, log := watcherOn(t, fmt.Sprintf("catalog \"redis\" {\n address = %q\n}\nfailover {\n primary_crash = \"failover\"\n}", r.Addr))
	attachCatalog(w.Env, r.Addr)
	ticks(w, 2)
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr})
	defer rdb.Close()
	key := "pgha:{" + w.Env.Cfg.Name + "}:history"
	if err := rdb.Del(context.Background(), key).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(context.Background(), key, "not a list", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.node("db1").running = false
	ticks(w, 3)
	if p := c.primaryRunning(); p != "db2" && p != "db3" {
		t.Fatalf("no failover: %q\n%s", p, log.String())
	}
	if apply := log.records(t, "apply"); len(apply) == 0 || apply[len(apply)-1]["outcome"] != "done" {
		t.Fatalf("the failover did not complete: %v\n%s", apply, log.String())
	}
	notes := log.records(t, "note")
	if len(notes) < 2 || !strings.Contains(fmt.Sprint(notes[0]["text"]), "the catalog history did not take") ||
		!strings.Contains(fmt.Sprint(notes[0]["text"]), "WRONGTYPE") {
		t.Fatalf("no note of the history entry the catalog refused: %v\n%s", notes, log.String())
	}
}

// Two watchers of one cluster: the one holding the leader lease acts,
// the other says who leads and does nothing; when the leader stops, the
// other takes over at once (the lease is released, not left to expire).
func TestWatchOneLeader(t *testing.T) {
	r := testenv.StartRedis(t)
	w1, c, log1 := watcherOn(t, fmt.Sprintf("catalog \"redis\" {\n address = %q\n}", r.Addr))
	attach := func(e *Env) {
		attachCatalog(e, r.Addr)
	}
	attach(w1.Env)
	log2 := &watchLog{}
	e2 := &Env{Cfg: w1.Env.Cfg, Runtime: w1.Env.Runtime, pg: w1.Env.pg}
	attach(e2)
	w2 := &Watcher{Env: e2, Log: log2.logger()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if out := w1.Tick(ctx); out.Err != nil {
		t.Fatalf("leader: %v\n%s", out.Err, log1.String())
	}
	c.node("db3").running = false
	c.calls = nil
	for range 3 {
		w2.Tick(ctx)
	}
	if c.node("db3").running || len(log2.records(t, "not leader")) != 1 || len(log2.records(t, "heal")) != 0 {
		t.Fatalf("the second watcher acted, or did not say once who leads:\n%s", log2.String())
	}
	w1.Stop()
	if out := w2.Tick(ctx); out.Err != nil || !c.node("db3").running {
		t.Fatalf("the second watcher did not take over: %+v\n%s", out, log2.String())
	}
	if len(log2.records(t, "leader acquired")) != 1 {
		t.Fatalf("no leader acquired record:\n%s", log2.String())
	}
	w2.Stop()
}

// A switchover interrupted after the old primary stopped (pgha apply
// killed) leaves no primary, and its intent in the catalog record: the
// watcher finishes it — db2 promoted once it replayed db1's shutdown
// checkpoint — rather than restarting db1 in place or failing over, and
// says it resumes with the intent's time.
func TestWatchFinishesInterruptedSwitchover(t *testing.T) {
	r := testenv.StartRedis(t)
	e, c := fakeEnv(t, "db2", fmt.Sprintf("catalog \"redis\" {\n address = %q\n}", r.Addr), nil)
	c.runAs("db1")
	e.pg = convergedPG{fakePG{c}}
	attachCatalog(e, r.Addr)
	ctx := context.Background()
	since := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	rec := state.ClusterRecord{Name: e.Cfg.Name, Primary: "db1", Nodes: []string{"db1", "db2", "db3"}, Generation: 1,
		SwitchingFrom: "db1", SwitchingTo: "db2", SwitchingSince: since}
	if err := e.Catalog.PutRecordIf(ctx, rec, 0); err != nil {
		t.Fatal(err)
	}
	if err := (fakeRuntime{c}).Stop(ctx, e.Cfg.Node("db1"), "fast"); err != nil {
		t.Fatal(err)
	}
	c.calls = nil
	log := &watchLog{}
	w := &Watcher{Env: e, Log: log.logger()}
	out := w.Tick(ctx)
	if c.primaryRunning() != "db2" || !c.node("db1").recovery {
		t.Fatalf("not finished: %+v primary %q\n%s", out, c.primaryRunning(), log.String())
	}
	// db1 came back only as db2's standby, after the promotion.
	c.before("pg.Promote db2", "rt.Start db1")
	sw := log.records(t, "switchover")
	if len(sw) != 1 || len(log.records(t, "failover")) != 0 || len(log.records(t, "restart in place")) != 0 {
		t.Fatalf("decisions:\n%s", log.String())
	}
	if sw[0]["resume"] != true || !strings.Contains(fmt.Sprint(sw[0]["reason"]), "begun at 2026-12-01 06:00:00Z") {
		t.Errorf("the switchover record does not say it resumes the intent of 06:00:00: %v", sw[0])
	}
	if _, got, _, _ := e.Catalog.Observe(ctx); got == nil || got.Primary != "db2" || got.Switching() {
		t.Errorf("record after the resumed switchover: %+v, want db2 without intent", got)
	}
	w.Stop()
}

// crashedAfterFailover is a watcher over the fake cluster after a
// failover: cluster.hcl still declares db1, the catalog records db2 (the
// failover's, generation 2, no switchover intent), db1 and db3 stream
// from db2. Then db2's server process dies: the recorded primary
// stopped, the declared one a running standby, no node writable — what
// an interrupted switchover leaves too, but without its intent.
func crashedAfterFailover(t *testing.T, crash string) (*Watcher, *fakeCluster, *watchLog) {
	t.Helper()
	r := testenv.StartRedis(t)
	e, c := fakeEnv(t, "db1", fmt.Sprintf("catalog \"redis\" {\n address = %q\n}\nfailover {\n primary_crash = %q\n}", r.Addr, crash), nil)
	c.runAs("db2")
	c.node("db2").timeline = 2
	e.pg = convergedPG{fakePG{c}}
	attachCatalog(e, r.Addr)
	ctx := context.Background()
	rec := state.ClusterRecord{Name: e.Cfg.Name, Primary: "db2", Nodes: []string{"db1", "db2", "db3"}, Generation: 2, Timeline: 2, Event: "failover"}
	if err := e.Catalog.PutRecordIf(ctx, rec, 0); err != nil {
		t.Fatal(err)
	}
	if err := (fakeRuntime{c}).Stop(ctx, e.Cfg.Node("db2"), "immediate"); err != nil {
		t.Fatal(err)
	}
	c.calls = nil
	log := &watchLog{}
	w := &Watcher{Env: e, Log: log.logger()}
	t.Cleanup(w.Stop)
	return w, c, log
}

// The failed-over primary crashes, primary_crash = "failover": the watcher
// fails over again, to db1 or db3; it does not "resume a switchover" to
// db1 (which started the crashed db2 and switched over from it, in a
// loop, and lost acknowledged writes on Docker).
func TestWatchCrashAfterFailoverFailsOver(t *testing.T) {
	w, c, log := crashedAfterFailover(t, "failover")
	out := w.Tick(context.Background())
	if out.Err != nil {
		t.Fatalf("tick: %v\n%s", out.Err, log.String())
	}
	if p := c.primaryRunning(); p != "db1" && p != "db3" {
		t.Fatalf("no new primary: %q\n%s", p, log.String())
	}
	fo := log.records(t, "failover")
	if len(fo) != 1 || fo[0]["from"] != "db2" || len(log.records(t, "switchover")) != 0 || c.called("rt.Start db2") {
		t.Fatalf("want one failover from db2, no switchover, db2 not started:\n%s\ncalls:\n%s", log.String(), c.log())
	}
	if _, rec, _, _ := w.Env.Catalog.Observe(context.Background()); rec == nil || rec.Generation != 3 || rec.Event != "failover" || rec.Primary != fo[0]["to"] {
		t.Errorf("record after the failover: %+v", rec)
	}
}

// The same crash with primary_crash = "restart": db2 is restarted in
// place as the primary it is recorded as; nothing is promoted, no
// switchover is run.
func TestWatchCrashAfterFailoverRestartsInPlace(t *testing.T) {
	w, c, log := crashedAfterFailover(t, "restart")
	if out := w.Tick(context.Background()); out.Err != nil {
		t.Fatalf("tick: %v\n%s", out.Err, log.String())
	}
	if p := c.primaryRunning(); p != "db2" || c.called("pg.Promote") {
		t.Fatalf("not restarted in place: primary %q\n%s\ncalls:\n%s", p, log.String(), c.log())
	}
	if r := log.records(t, "restart in place"); len(r) != 1 || r[0]["node"] != "db2" {
		t.Fatalf("restart records: %v\n%s", r, log.String())
	}
	if len(log.records(t, "switchover")) != 0 || len(log.records(t, "failover")) != 0 {
		t.Fatalf("a switchover or failover besides the restart:\n%s", log.String())
	}
}

// A healing that keeps failing is retried after 2 s, 4 s ... rather than
// at every check, and said with its delay.
func TestWatchBacksOffFailingHeal(t *testing.T) {
	w, c, log := watcherOn(t, "")
	now := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	w.Now = func() time.Time { return now }
	c.node("db3").running = false
	c.fail["Start db3"] = errScripted
	for range 3 {
		w.Tick(context.Background())
		now = now.Add(time.Second)
	}
	if n := strings.Count(c.log(), "rt.Start db3"); n != 2 {
		t.Fatalf("db3 started %d times in 3 s, want 2 (at 0 s and after the first 2 s backoff):\n%s", n, c.log())
	}
	b := log.records(t, "backoff")
	if len(b) != 2 || b[0]["retry_in"] != "2s" || b[1]["retry_in"] != "4s" {
		t.Fatalf("backoff records: %v", b)
	}
	delete(c.fail, "Start db3")
	now = now.Add(4 * time.Second)
	if out := w.Tick(context.Background()); out.Err != nil || !c.node("db3").running {
		t.Fatalf("not healed once it can be: %+v", out)
	}
}

// Run checks at once, takes a reloaded file at once (config changed) and
// the leader lease again with it, and returns nil, saying stopping, when
// its context ends.
func TestWatchRunReloadStop(t *testing.T) {
	w, _, log := watcherOn(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	e2 := *w.Env
	cfg2 := *w.Env.Cfg
	cfg2.Hash = "sha256:edited"
	e2.Cfg = &cfg2
	w.Reload(&e2)
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	for _, msg := range []string{"watch started", "config changed", "converged", "stopping"} {
		if len(log.records(t, msg)) != 1 {
			t.Errorf("%d %q records:\n%s", len(log.records(t, msg)), msg, log.String())
		}
	}
	// The lease held through the old Env is taken again through the new
	// one at once, not at the next action (another watcher would lead).
	if n := len(log.records(t, "leader acquired")); n != 2 {
		t.Errorf("%d leader acquired records, want 2 (at start, after the reload):\n%s", n, log.String())
	}
	if w.Env != &e2 {
		t.Error("the reloaded Env is not in use")
	}
}

// A managed catalog that is down is started again (watch.heal), every
// 5 s at most; nothing else is done meanwhile.
func TestWatchStartsManagedCatalog(t *testing.T) {
	w, c, log := watcherOn(t, "")
	// Declared after the first apply, which would have started it.
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := *w.Env.Cfg
	cfg.Catalog = &config.Catalog{Kind: "redis", Address: addr, Managed: true, Password: config.NewSecret("cat-secret")}
	w.Env.Cfg = &cfg
	w.Env.Catalog = redis.New(addr, "", 0, "fake")
	w.Env.store = redisStore{w.Env.Catalog}
	now := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	w.Now = func() time.Time { return now }
	c.node("db3").running = false
	w.Tick(context.Background())
	w.Tick(context.Background())
	if n := strings.Count(c.log(), "rt.StartCatalog"); n != 1 || c.called("rt.Start db3") {
		t.Fatalf("catalog started %d times in one check interval, or a node healed without it:\n%s", n, c.log())
	}
	if h := log.records(t, "heal"); len(h) != 1 || h[0]["action"] != "catalog.start" {
		t.Fatalf("heal records: %v", h)
	}
	now = now.Add(6 * time.Second)
	w.Tick(context.Background())
	if n := strings.Count(c.log(), "rt.StartCatalog"); n != 2 {
		t.Fatalf("not tried again after 5 s:\n%s", c.log())
	}
}

// A switchover a pgha began (its intent in the catalog) and that was
// killed before it stopped db1 is run again by the watcher, although
// failback is manual: it carries out what an apply was running. Without
// the intent the same cluster (db1 writable, cluster.hcl declaring db2)
// is a failback, which the watcher does not make.
func TestWatchRunsAgainSwitchoverBegun(t *testing.T) {
	for _, intent := range []bool{true, false} {
		t.Run(fmt.Sprintf("intent=%v", intent), func(t *testing.T) {
			r := testenv.StartRedis(t)
			e, c := fakeEnv(t, "db2", fmt.Sprintf("catalog \"redis\" {\n address = %q\n}", r.Addr), nil)
			c.runAs("db1")
			e.pg = convergedPG{fakePG{c}}
			attachCatalog(e, r.Addr)
			ctx := context.Background()
			rec := state.ClusterRecord{Name: e.Cfg.Name, Primary: "db1", Nodes: []string{"db1", "db2", "db3"}, Generation: 3, Event: "record"}
			if intent {
				rec.SwitchingFrom, rec.SwitchingTo, rec.SwitchingSince = "db1", "db2", time.Now().UTC()
			}
			if err := e.Catalog.PutRecordIf(ctx, rec, 0); err != nil {
				t.Fatal(err)
			}
			log := &watchLog{}
			w := &Watcher{Env: e, Log: log.logger()}
			defer w.Stop()
			w.Tick(ctx)
			_, got, _, _ := e.Catalog.Observe(ctx)
			if !intent {
				if c.primaryRunning() != "db1" || c.called("rt.Stop db1") || len(log.records(t, "switchover")) != 0 {
					t.Fatalf("without an intent the watcher switched back (failback is manual): primary %q\n%s", c.primaryRunning(), log.String())
				}
				return
			}
			if c.primaryRunning() != "db2" || got == nil || got.Primary != "db2" || got.Generation != 4 || got.Switching() {
				t.Fatalf("the begun switchover was not run again: primary %q, record %+v\n%s", c.primaryRunning(), got, log.String())
			}
			if sw := log.records(t, "switchover"); len(sw) != 1 || !strings.Contains(fmt.Sprint(sw[0]["reason"]), "the catalog's switchover intent") {
				t.Fatalf("switchover records: %v", sw)
			}
		})
	}
}

// lateReceiverPG is convergedPG whose standbys still report streaming
// from db1 after its process died: their WAL receivers have not noticed
// yet, as happens for a few milliseconds after a crash.
type lateReceiverPG struct{ convergedPG }

func (p lateReceiverPG) Observe(ctx context.Context, ep postgres.Endpoint, sn *state.Node, roles map[string]string) {
	p.convergedPG.Observe(ctx, ep, sn, roles)
	if sn.Reachable && sn.InRecovery {
		h, port := p.cfg.PeerEndpoint(p.cfg.Node("db1"))
		sn.Upstream = &state.Upstream{Status: "streaming", Host: h, Port: port}
	}
}

// A crashed primary the standbys still say they hear is suspect, and the
// next check comes after recheckAfter rather than a whole interval; once
// they agree it is restarted in place, and the debug log says how long
// the plan under the lock and each step of the start took.
func TestWatchRechecksSoonAfterUnconfirmedCrash(t *testing.T) {
	w, c, log := watcherOn(t, "")
	c.node("db1").running = false
	w.Env.pg = lateReceiverPG{convergedPG{fakePG{c}}}
	if out := w.Tick(context.Background()); out.Err != nil || len(out.Acted) != 0 || !w.recheck {
		t.Fatalf("a crash the standbys deny: %+v recheck %v\n%s", out, w.recheck, log.String())
	}
	if s := log.records(t, "primary suspect"); len(s) != 1 || !strings.Contains(fmt.Sprint(s[0]["reason"]), "the two disagree") {
		t.Fatalf("suspect records: %v", s)
	}
	if d := recheckAfter(w.Env.Cfg); d != 200*time.Millisecond {
		t.Fatalf("recheck after %s at a 1 s interval", d)
	}
	w.Env.pg = convergedPG{fakePG{c}}
	out := w.Tick(context.Background())
	if out.Err != nil || c.primaryRunning() != "db1" || w.recheck {
		t.Fatalf("not restarted once confirmed: %+v primary %q recheck %v\n%s", out, c.primaryRunning(), w.recheck, log.String())
	}
	var steps []string
	for _, r := range log.records(t, "step") {
		steps = append(steps, fmt.Sprint(r["what"]))
	}
	want := "planned under the lock,prepare db1,configure db1,server started db1,ready db1,node.start[db1],end"
	if strings.Join(steps, ",") != want {
		t.Fatalf("steps %q, want %q", strings.Join(steps, ","), want)
	}
	// A healthy check goes back to the interval.
	w.Tick(context.Background())
	if w.recheck {
		t.Fatal("recheck left on for a healthy primary")
	}
}

// An edit of the file that leaves the catalog as it was keeps the leader
// lease: no gap in which another watcher takes the lead (it did at every
// edit when the lease was given up and taken again). The Env the lease
// renews through stays open until the lease is released. An edit naming
// another catalog gives the lease up.
func TestWatchKeepsLeaseOverEdit(t *testing.T) {
	r := testenv.StartRedis(t)
	w1, c, log1 := watcherOn(t, fmt.Sprintf("catalog \"redis\" {\n address = %q\n}", r.Addr))
	attach := func(e *Env) {
		attachCatalog(e, r.Addr)
	}
	attach(w1.Env)
	ctx := context.Background()
	if out := w1.Tick(ctx); out.Err != nil {
		t.Fatalf("leader: %v\n%s", out.Err, log1.String())
	}
	probe := redis.New(r.Addr, "", 0, w1.Env.Cfg.Name)
	defer probe.Close()
	before, err := probe.Leader(ctx)
	if err != nil || before == nil {
		t.Fatalf("no leader after the first check: %v %v", before, err)
	}
	edit := func(address string) *Env {
		cfg := *w1.Env.Cfg
		cat := *cfg.Catalog
		cat.Address = address
		cfg.Catalog, cfg.Hash = &cat, cfg.Hash+"-edited"
		e := &Env{Cfg: &cfg, Runtime: w1.Env.Runtime, pg: w1.Env.pg}
		attachCatalog(e, address)
		return e
	}
	first := w1.Env
	w1.swap(edit(r.Addr))
	if l, err := probe.Leader(ctx); err != nil || l == nil || l.ID != before.ID {
		t.Fatalf("the lease changed over an edit that kept the catalog: %v (was %v), %v", l, before, err)
	}
	if w1.leaseEnv != first {
		t.Fatal("the Env the lease renews through was not kept")
	}
	if _, err := first.Catalog.Leader(ctx); err != nil {
		t.Fatalf("the lease's Env was closed while the lease lives: %v", err)
	}
	// Another watcher started now does not lead.
	e2 := &Env{Cfg: w1.Env.Cfg, Runtime: w1.Env.Runtime, pg: w1.Env.pg}
	attach(e2)
	log2 := &watchLog{}
	w2 := &Watcher{Env: e2, Log: log2.logger()}
	c.node("db3").running = false
	w2.Tick(ctx)
	if c.node("db3").running || len(log2.records(t, "not leader")) != 1 {
		t.Fatalf("a second watcher led after the edit:\n%s", log2.String())
	}
	// A second edit with the same catalog: still the same lease.
	w1.swap(edit(r.Addr))
	if l, _ := probe.Leader(ctx); l == nil || l.ID != before.ID || w1.leaseEnv != first {
		t.Fatalf("a second edit lost the lease or its Env: %v", l)
	}
	// An edit naming another catalog gives the lease up (and closes its Env).
	w1.swap(edit("127.0.0.1:1"))
	if l, _ := probe.Leader(ctx); l != nil || w1.leaseEnv != nil {
		t.Fatalf("the lease was kept over an edit of the catalog's address: %v", l)
	}
	if _, err := first.Catalog.Leader(ctx); err == nil {
		t.Fatal("the old lease's Env is still open after the lease was released")
	}
	w2.Stop()
	w1.Stop()
}

// An edit that makes the file declare the primary a failover made (the
// operator's file following the cluster) asks for no switchover: when
// that primary crashes before the watcher next converges and is failed
// over, switching back to it is a failback, held under failback =
// "manual" (TestDockerWatch once switched back, stopping the new primary
// under its writers, because the edit still counted as pending).
func TestWatchEditToWritablePrimaryIsNoSwitchover(t *testing.T) {
	w, c, log := crashedAfterFailover(t, "failover")
	ctx := context.Background()
	if err := (fakeRuntime{c}).Start(ctx, w.Env.Cfg.Node("db2")); err != nil {
		t.Fatal(err)
	}
	w.Tick(ctx) // db2 writable, recorded: nothing to do under failback = "manual"
	if w.lastPrimary != "db2" {
		t.Fatalf("last observed primary %q, want db2\n%s", w.lastPrimary, log.String())
	}
	follow := func(primary string) *Env {
		cfg := *w.Env.Cfg
		cfg.Primary, cfg.Hash = primary, cfg.Hash+"-"+primary
		e := &Env{Cfg: &cfg, Runtime: w.Env.Runtime, pg: w.Env.pg}
		attachCatalog(e, cfg.Catalog.Address)
		return e
	}
	w.swap(follow("db2"))
	if w.sit.PrimaryEdited {
		t.Fatal("an edit declaring the writable primary counts as a primary edit: a later failover would be switched back")
	}
	// Declaring a standby is an edit a switchover carries out.
	w.swap(follow("db3"))
	if !w.sit.PrimaryEdited {
		t.Fatal("an edit declaring a standby primary is not taken for a primary edit")
	}
	w.swap(follow("db2"))
	if w.sit.PrimaryEdited {
		t.Fatal("an edit back to the writable primary left the pending edit to db3")
	}
	// db2 crashes before the watcher converged on the edit: failed over,
	// and not switched back to db2 once it runs again.
	if err := (fakeRuntime{c}).Stop(ctx, w.Env.Cfg.Node("db2"), "immediate"); err != nil {
		t.Fatal(err)
	}
	c.calls = nil
	ticks(w, 4)
	if len(log.records(t, "failover")) != 1 || len(log.records(t, "switchover")) != 0 {
		t.Fatalf("want one failover and no switchover:\n%s\ncalls:\n%s", log.String(), c.log())
	}
	if w.sit.PrimaryEdited {
		t.Fatal("the edit to db2 is pending after the failover")
	}
}

// slowOncePG times out the first observation of one node, as a loaded
// server answering late does, and answers the next.
type slowOncePG struct {
	convergedPG
	node  string
	calls *int
}

func (p slowOncePG) Observe(ctx context.Context, ep postgres.Endpoint, sn *state.Node, roles map[string]string) {
	if ep.Name == p.node {
		*p.calls++
		if *p.calls == 1 {
			sn.Reachable, sn.Error = false, "query "+ep.Name+": timeout: context deadline exceeded"
			return
		}
	}
	p.convergedPG.Observe(ctx, ep, sn, roles)
}

// A one-shot observation (plan, apply, status) asks a node that timed out
// once more, so that a loaded server is not a critical finding; the
// watcher's quick check does not wait twice.
func TestObserveAsksTimedOutNodeAgain(t *testing.T) {
	w, _, _ := watcherOn(t, "")
	base := w.Env.pg.(convergedPG)
	for _, quick := range []bool{false, true} {
		calls := 0
		w.Env.pg = slowOncePG{convergedPG: base, node: "db1", calls: &calls}
		s := w.Env.ObserveWith(context.Background(), ObserveOptions{Quick: quick})
		n := s.Node("db1")
		switch {
		case !quick && (!n.Reachable || calls != 2):
			t.Errorf("one-shot: db1 reachable %v after %d observations (%s), want reachable after 2", n.Reachable, calls, n.Error)
		case quick && (n.Reachable || calls != 1):
			t.Errorf("quick: db1 reachable %v after %d observations, want the one timeout", n.Reachable, calls)
		}
	}
}
