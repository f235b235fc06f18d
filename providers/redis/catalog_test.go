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
	if _, rec, _, _ := c.Observe(ctx); rec != nil {
		t.Fatal("record survived DeleteCluster")
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
	lease, err := a.Acquire(ctx, holder, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The lease outlives its TTL because it is renewed.
	time.Sleep(time.Second)
	waited := make(chan *state.Lock, 1)
	_, err = b.Acquire(ctx, state.Lock{ID: "id-b", Operation: "apply"}, 600*time.Millisecond, func(h *state.Lock) { waited <- h })
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
	lb, err := b.Acquire(ctx, state.Lock{ID: "id-b"}, 0, nil)
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
	if _, _, l, _ := b.Observe(ctx); l != nil {
		t.Fatalf("lock left after release: %+v", l)
	}
}
