package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

func TestRecordAndHistory(t *testing.T) {
	r := testenv.StartRedis(t)
	c := New(r.Addr, "", 0, "t1")
	defer c.Close()
	ctx := context.Background()
	ok, rec, lock, err := c.Observe(ctx)
	if !ok || rec != nil || lock != nil || err != nil {
		t.Fatalf("empty catalog: %v %v %v %v", ok, rec, lock, err)
	}
	want := state.ClusterRecord{Name: "t1", Primary: "db1", Nodes: []string{"db1", "db2"}, Generation: 3, UpdatedAt: time.Now().UTC().Truncate(time.Second)}
	if err := c.PutRecord(ctx, want); err != nil {
		t.Fatal(err)
	}
	_, rec, _, err = c.Observe(ctx)
	if err != nil || rec == nil || rec.Primary != "db1" || rec.Generation != 3 || len(rec.Nodes) != 2 || !rec.UpdatedAt.Equal(want.UpdatedAt) {
		t.Fatalf("record round trip: %+v %v", rec, err)
	}
	for i := range historyCap + 5 {
		if err := c.AppendHistory(ctx, Event{Kind: "test", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := c.History(ctx, historyCap+10)
	if err != nil || len(h) != historyCap || h[0].Message != fmt.Sprint(historyCap+4) {
		t.Fatalf("history: %d events, first %+v, %v", len(h), h[0], err)
	}
	if err := c.DeleteCluster(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, rec, _, err := c.Observe(ctx); !ok || err != nil || rec != nil {
		t.Fatalf("after DeleteCluster: reachable %v, record %+v, %v", ok, rec, err)
	}
}

func TestObserveUnreachable(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Stop()
	c := New(r.Addr, "", 0, "t2")
	defer c.Close()
	ok, _, _, err := c.Observe(context.Background())
	if ok || err == nil {
		t.Fatalf("stopped redis observed as reachable: %v %v", ok, err)
	}
}

func TestLock(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	a := New(r.Addr, "", 0, "t3")
	b := New(r.Addr, "", 0, "t3")
	defer a.Close()
	defer b.Close()
	a.SetLockTTL(300 * time.Millisecond)
	holder := state.Lock{ID: "id-a", Owner: "alice", Host: "h1", PID: 11, Operation: "apply", Created: time.Now()}
	lease, err := a.Acquire(ctx, holder, AcquireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The lease outlives its TTL because it is renewed.
	time.Sleep(time.Second)
	waited := make(chan *state.Lock, 1)
	_, err = b.Acquire(ctx, state.Lock{ID: "id-b", Operation: "apply"}, AcquireOptions{Timeout: 600 * time.Millisecond, OnWait: func(h *state.Lock) { waited <- h }})
	var le *LockedError
	if !errors.As(err, &le) || le.Holder == nil || le.Holder.ID != "id-a" {
		t.Fatalf("second acquire: %v", err)
	}
	for _, want := range []string{"id-a", "alice@h1", "pid 11", `"apply"`, "pgha force-unlock id-a"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("lock error lacks %q: %v", want, err)
		}
	}
	select {
	case h := <-waited:
		if h == nil || h.ID != "id-a" {
			t.Errorf("onWait got %+v", h)
		}
	default:
		t.Error("onWait was not called after 400ms")
	}
	if err := b.ForceUnlock(ctx, "id-x"); err == nil || !strings.Contains(err.Error(), "id-a") {
		t.Fatalf("force-unlock with a wrong ID: %v", err)
	}
	if err := b.ForceUnlock(ctx, "id-a"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lease.Lost():
	case <-time.After(2 * time.Second):
		t.Fatal("lease did not notice it was force-unlocked")
	}
	lb, err := b.Acquire(ctx, state.Lock{ID: "id-b"}, AcquireOptions{})
	if err != nil {
		t.Fatalf("acquire after force-unlock: %v", err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("releasing a lost lease: %v", err)
	}
	if _, _, l, _ := b.Observe(ctx); l == nil || l.ID != "id-b" {
		t.Fatalf("a lost lease's release removed someone else's lock: %+v", l)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal("second release:", err)
	}
	if ok, _, l, err := b.Observe(ctx); !ok || err != nil || l != nil {
		t.Fatalf("after release: reachable %v, lock %+v, %v", ok, l, err)
	}
}

func TestHistoryAll(t *testing.T) {
	r := testenv.StartRedis(t)
	c := New(r.Addr, "", 0, "t4")
	defer c.Close()
	ctx := context.Background()
	for i := range 3 {
		if err := c.AppendHistory(ctx, Event{Time: time.Now(), Kind: "apply", Message: fmt.Sprint(i), Generation: int64(i),
			Details: map[string]string{"node": "db1"}}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := c.History(ctx, 0)
	if err != nil || len(h) != 3 || h[0].Message != "2" || h[2].Message != "0" || h[0].Generation != 2 || h[0].Details["node"] != "db1" {
		t.Fatalf("history: %+v %v", h, err)
	}
	if h, _ := c.History(ctx, 2); len(h) != 2 || h[1].Message != "1" {
		t.Fatalf("history(2): %+v", h)
	}
}

func TestPasswordNotInErrors(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	admin := New(r.Addr, "", 0, "t5")
	defer admin.Close()
	if err := admin.client.ConfigSet(ctx, "requirepass", "right-secret").Err(); err != nil {
		t.Fatal(err)
	}
	wrong := New(r.Addr, "wrong-secret", 0, "t5")
	defer wrong.Close()
	ok, _, _, err := wrong.Observe(ctx)
	if ok || err == nil || strings.Contains(err.Error(), "wrong-secret") || strings.Contains(err.Error(), "right-secret") {
		t.Fatalf("wrong password: %v %v", ok, err)
	}
	if err := wrong.Ping(ctx); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("ping with a wrong password: %v", err)
	}
	right := New(r.Addr, "right-secret", 0, "t5")
	defer right.Close()
	if err := right.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLockTimeoutWithinQuietPeriod: a wait shorter than the quiet 400 ms
// ends in a LockedError without ever calling onWait.
func TestLockTimeoutWithinQuietPeriod(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	c := New(r.Addr, "", 0, "t6")
	defer c.Close()
	lease, err := c.Acquire(ctx, state.Lock{ID: "id-1", Owner: "bob", Host: "h2", PID: 22, Operation: "plan"}, AcquireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(ctx)
	called := false
	start := time.Now()
	_, err = c.Acquire(ctx, state.Lock{ID: "id-2"}, AcquireOptions{Timeout: 300 * time.Millisecond, OnWait: func(*state.Lock) { called = true }})
	var le *LockedError
	if !errors.As(err, &le) || le.Holder.ID != "id-1" || le.Holder.Host != "h2" || le.Holder.PID != 22 || le.Holder.Operation != "plan" {
		t.Fatalf("acquire of a held lock: %v", err)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatal("gave up before the timeout")
	}
	if called {
		t.Fatal("onWait called within the quiet period")
	}
	// timeout 0 is a single try.
	if _, err := c.Acquire(ctx, state.Lock{ID: "id-3"}, AcquireOptions{}); !errors.As(err, &le) {
		t.Fatalf("one try: %v", err)
	}
}

// TestLeaseEndsWithContext: the renewer stops with the Acquire context and
// says so through Lost; Release still removes the lock.
func TestLeaseEndsWithContext(t *testing.T) {
	r := testenv.StartRedis(t)
	c := New(r.Addr, "", 0, "t7")
	defer c.Close()
	c.SetLockTTL(300 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	lease, err := c.Acquire(ctx, state.Lock{ID: "id-ctx"}, AcquireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-lease.Lost():
	case <-time.After(2 * time.Second):
		t.Fatal("Lost not closed after the context ended")
	}
	if err := lease.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ok, _, l, err := c.Observe(context.Background()); !ok || err != nil || l != nil {
		t.Fatalf("after release: reachable %v, lock %+v, %v", ok, l, err)
	}
}

func TestForceUnlockNothingLocked(t *testing.T) {
	r := testenv.StartRedis(t)
	c := New(r.Addr, "", 0, "t8")
	defer c.Close()
	if err := c.ForceUnlock(context.Background(), "id-x"); err == nil || !strings.Contains(err.Error(), "not locked") {
		t.Fatalf("force-unlock of nothing: %v", err)
	}
}

// TestLockTakeOverGone: a holder Gone declares dead is replaced at once
// (named by TookOver), a live one is waited for, and the replaced holder's
// renewals and release no longer touch the lock.
func TestLockTakeOverGone(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	c := New(r.Addr, "", 0, "t9")
	defer c.Close()
	old, err := c.Acquire(ctx, state.Lock{ID: "dead", Host: "h1", PID: 4242}, AcquireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var le *LockedError
	if _, err := c.Acquire(ctx, state.Lock{ID: "new"}, AcquireOptions{Gone: func(*state.Lock) bool { return false }}); !errors.As(err, &le) || le.Holder.ID != "dead" {
		t.Fatalf("acquire over a live holder: %v", err)
	}
	start := time.Now()
	l, err := c.Acquire(ctx, state.Lock{ID: "new"}, AcquireOptions{Timeout: 5 * time.Second,
		Gone: func(h *state.Lock) bool { return h.Host == "h1" && h.PID == 4242 }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	if time.Since(start) > time.Second {
		t.Fatalf("take-over waited %s", time.Since(start))
	}
	if tk := l.TookOver(); tk == nil || tk.ID != "dead" || tk.PID != 4242 {
		t.Fatalf("TookOver = %+v, want the dead holder", tk)
	}
	if err := old.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, h, _ := c.Observe(ctx); h == nil || h.ID != "new" {
		t.Fatalf("after the old holder's release the lock is %+v, want new", h)
	}
}

// TestProbeAndPassword: Probe tells an open server from one that requires
// a password; a client whose password the server does not ask for still
// works (it sends none), and SetPassword is used by new connections.
func TestProbeAndPassword(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	c := New(r.Addr, "not-yet-set", 0, "t10")
	defer c.Close()
	if open, err := c.Probe(ctx); err != nil || !open {
		t.Fatalf("probe of a server without requirepass: open=%v err=%v", open, err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping an open server with a password configured: %v", err)
	}
	if err := c.client.ConfigSet(ctx, "requirepass", "s3cret-catalog").Err(); err != nil {
		t.Fatal(err)
	}
	c.client.Close() // connections made before requirepass stay authenticated
	c = New(r.Addr, "wrong", 0, "t10")
	defer c.Close()
	if open, err := c.Probe(ctx); err != nil || open {
		t.Fatalf("probe of a server with requirepass: open=%v err=%v", open, err)
	}
	if err := c.Ping(ctx); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("ping with a wrong password: %v", err)
	}
	c.SetPassword("s3cret-catalog")
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping after SetPassword: %v", err)
	}
}

// TestLeaseVerify: Verify sees at once that the lock was broken (no wait
// for a renewal) and the lease is lost from then on.
func TestLeaseVerify(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	c := New(r.Addr, "", 0, "t11")
	defer c.Close()
	l, err := c.Acquire(ctx, state.Lock{ID: "mine"}, AcquireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	if err := l.Verify(ctx); err != nil {
		t.Fatalf("verify of a held lease: %v", err)
	}
	if err := c.ForceUnlock(ctx, "mine"); err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("verify after force-unlock: %v", err)
	}
	select {
	case <-l.Lost():
	default:
		t.Fatal("Lost not closed after Verify found the lock gone")
	}
}

// TestRecordIntentRoundTrip: a switchover's intent is written at the
// record's generation (the compare-and-set reads only the generation of
// the JSON it replaces) and read back whole; a record written without it
// has none.
func TestRecordIntentRoundTrip(t *testing.T) {
	r := testenv.StartRedis(t)
	c := New(r.Addr, "", 0, "intent")
	defer c.Close()
	ctx := context.Background()
	base := state.ClusterRecord{Name: "intent", Primary: "db1", Nodes: []string{"db1", "db2"}, Generation: 4, Event: "record"}
	if err := c.PutRecordIf(ctx, base, 0); err != nil {
		t.Fatal(err)
	}
	base.Revision = 1 // as read back
	since := time.Date(2026, 12, 1, 6, 0, 0, 123000000, time.UTC)
	with := base
	with.SwitchingFrom, with.SwitchingTo, with.SwitchingSince = "db1", "db2", since
	if err := c.PutRecordIf(ctx, with, 4); err != nil {
		t.Fatalf("intent at the record's generation: %v", err)
	}
	_, rec, _, err := c.Observe(ctx)
	if err != nil || rec == nil || rec.SwitchingFrom != "db1" || rec.SwitchingTo != "db2" || !rec.SwitchingSince.Equal(since) || rec.Generation != 4 {
		t.Fatalf("intent round trip: %+v %v", rec, err)
	}
	var ge *state.RecordMovedError
	if err := c.PutRecordIf(ctx, base, 3); !errors.As(err, &ge) || ge.Stored != 4 {
		t.Fatalf("clearing the intent at a stale generation: %v", err)
	}
	if err := c.PutRecordIf(ctx, base, 4); !errors.As(err, &ge) || ge.StoredRevision != 2 {
		t.Fatalf("clearing the intent from the record read before it was written: %v", err)
	}
	cleared := *rec
	cleared.SwitchingFrom, cleared.SwitchingTo, cleared.SwitchingSince = "", "", time.Time{}
	if err := c.PutRecordIf(ctx, cleared, 4); err != nil {
		t.Fatal(err)
	}
	if _, rec, _, _ = c.Observe(ctx); rec.Switching() || !rec.SwitchingSince.IsZero() {
		t.Fatalf("after clearing: %+v", rec)
	}
}
