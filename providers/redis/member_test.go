package redis

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// TestMemberLeases: each node's agent holds its own member lease, a
// second agent for the same node is refused and told who holds it, and
// Members lists what is held. A store that stops answering makes the
// lease Lost before Redis expires the key, and the expired key is gone
// from Members: the order a watcher's promotion relies on.
func TestMemberLeases(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(r.Addr, "", 0, "members")
	defer c.Close()
	const ttl = 1500 * time.Millisecond
	db1, err := c.HoldMember(ctx, "db1", state.Lock{ID: "a1", Host: "h1", PID: 1, Operation: "agent db1"}, ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	db2, err := c.HoldMember(ctx, "db2", state.Lock{ID: "a2", Host: "h2", PID: 2, Operation: "agent db2"}, ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Release(ctx)
	_, err = c.HoldMember(ctx, "db1", state.Lock{ID: "x", Host: "h3", PID: 3}, ttl, nil)
	var he *MemberHeldError
	if !errors.Is(err, ErrMemberHeld) || !errors.As(err, &he) || he.Holder == nil || he.Holder.ID != "a1" {
		t.Fatalf("second agent for db1: %v, want MemberHeldError naming a1", err)
	}
	// The same agent (same ID) takes its own lease back.
	again, err := c.HoldMember(ctx, "db1", state.Lock{ID: "a1", Host: "h1", PID: 1}, ttl, nil)
	if err != nil {
		t.Fatalf("the holder's own ID: %v", err)
	}
	_ = again
	m, err := c.Members(ctx)
	if err != nil || len(m) != 2 || m["db1"].ID != "a1" || m["db2"].ID != "a2" {
		t.Fatalf("Members = %v, %v", m, err)
	}
	// Renewals keep it beyond its ttl.
	time.Sleep(2 * ttl)
	select {
	case <-db1.Lost():
		t.Fatal("a renewed lease was lost")
	default:
	}
	if m, _ := c.Members(ctx); len(m) != 2 {
		t.Fatalf("after two ttl of renewals Members = %v", m)
	}
	// The store stops answering.
	if err := r.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	select {
	case <-db1.Lost():
	case <-time.After(2 * ttl):
		_ = r.Signal(syscall.SIGCONT)
		t.Fatal("the lease was not lost while the store did not answer")
	}
	lost := time.Since(cut)
	if lost > ttl-ttl/10+100*time.Millisecond {
		t.Errorf("Lost came %s after the store stopped answering, later than ttl - ttl/10 = %s", lost, ttl-ttl/10)
	}
	time.Sleep(ttl)
	if err := r.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	m, err = c.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m["db1"]; ok {
		t.Fatalf("db1's lease outlived its ttl: %v", m)
	}
	t.Logf("ttl %s: Lost %s after the store stopped answering", ttl, lost.Round(time.Millisecond))
}
