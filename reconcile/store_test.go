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
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

// TestRunLockBusy: a watcher's Run with lock timeout 0 while a live
// `pgha apply` holds the cluster lock fails at once with ErrLockBusy,
// naming the holder, so that the watch loop can say "lock busy" and try
// again; nothing is planned or done.
func TestRunLockBusy(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	cat := redis.New(r.Addr, "", 0, "busy")
	defer cat.Close()
	apply := LockInfo("apply") // this very process: alive
	held, err := cat.Acquire(ctx, apply, redis.AcquireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(ctx)
	e := &Env{Cfg: &config.Cluster{Name: "busy"}, Catalog: cat, store: redisStore{cat}}
	var events eventLog
	start := time.Now()
	p, err := e.Run(ctx, RunOptions{LockTimeout: 0, Events: &events})
	var he *HeldError
	if !errors.Is(err, ErrLockBusy) || !errors.As(err, &he) || he.Holder == nil || he.Holder.ID != apply.ID {
		t.Fatalf("Run while the lock is held: %v", err)
	}
	if errors.Is(err, ErrLeaderHeld) {
		t.Fatalf("a busy lock matches ErrLeaderHeld: %v", err)
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(apply.PID)) {
		t.Fatalf("the error does not name the holder: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a one-try lock took %s", d)
	}
	if p != nil || len(events) != 1 {
		t.Fatalf("something was planned or reported besides the outcome: plan %v, events %+v", p, events)
	}
}

// TestLockAfterRemoteHolderDies: the lock of a pgha killed on another host
// (no renewal, no release) cannot be taken before its lease runs out, and
// is taken once it has; one on this host whose process is gone is taken
// over at once (TestLockTakesOverDeadHolder).
func TestLockAfterRemoteHolderDies(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	const ttl = 1500 * time.Millisecond
	remote := redis.New(r.Addr, "", 0, "remote")
	defer remote.Close()
	remote.SetLockTTL(ttl)
	dead := LockInfo("switchover")
	dead.Host = "another-host"
	dctx, kill := context.WithCancel(ctx)
	if _, err := remote.Acquire(dctx, dead, redis.AcquireOptions{}); err != nil {
		t.Fatal(err)
	}
	kill() // the renewer stops: what SIGKILL leaves behind
	killed := time.Now()

	cat := redis.New(r.Addr, "", 0, "remote")
	defer cat.Close()
	cat.SetLockTTL(ttl)
	e := &Env{Cfg: &config.Cluster{Name: "remote"}, Catalog: cat, store: redisStore{cat}}
	var out strings.Builder
	var lease Lease
	for {
		var err error
		lease, err = e.Lock(ctx, "watch", 0, &out)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrLockBusy) {
			t.Fatalf("lock while the dead remote holder's lease runs: %v", err)
		}
		if time.Since(killed) > 3*ttl {
			t.Fatalf("the lock was not free %s after its holder died: %v", 3*ttl, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer lease.Release(ctx)
	took := time.Since(killed)
	t.Logf("remote holder killed → lock taken after %s (TTL %s)", took.Round(time.Millisecond), ttl)
	if took < ttl-100*time.Millisecond {
		t.Fatalf("took the lock of a remote holder %s after its death, before its lease (%s) ran out", took, ttl)
	}
	if lease.TookOver() != nil || strings.Contains(out.String(), "Took over") {
		t.Fatalf("a remote holder was declared gone: %q", out.String())
	}
}

// TestEnvAcquireLeader: one watcher leads; another is told who, with
// ErrLeaderHeld; a leader on this host whose process died is replaced at
// once; the leader lease and the cluster lock do not exclude each other.
func TestEnvAcquireLeader(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	cat := redis.New(r.Addr, "", 0, "leader")
	defer cat.Close()
	e := &Env{Cfg: &config.Cluster{Name: "leader"}, Catalog: cat, store: redisStore{cat}}

	if _, err := (&Env{Cfg: &config.Cluster{Name: "none"}}).AcquireLeader(ctx, LockInfo("watch"), 0); !errors.Is(err, ErrNoCatalog) {
		t.Fatalf("without a catalog: %v", err)
	}

	proc := startSleeper(t)
	first := LockInfo("watch")
	first.PID = proc.Pid
	first.Start, _ = processStart(proc.Pid)
	l1, err := e.AcquireLeader(ctx, first, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Release(ctx)
	_, err = e.AcquireLeader(ctx, LockInfo("watch"), 3*time.Second)
	var he *HeldError
	if !errors.Is(err, ErrLeaderHeld) || !errors.As(err, &he) || he.Holder == nil || he.Holder.ID != first.ID ||
		!strings.Contains(err.Error(), "pid "+strconv.Itoa(proc.Pid)) {
		t.Fatalf("second watcher while the first lives: %v", err)
	}
	if errors.Is(err, ErrLockBusy) {
		t.Fatalf("a held leader lease matches ErrLockBusy: %v", err)
	}
	// The leader's apply takes the cluster lock as anyone would.
	var out strings.Builder
	lock, err := e.Lock(ctx, "apply", 0, &out)
	if err != nil {
		t.Fatalf("cluster lock while a leader exists: %v", err)
	}
	lock.Release(ctx)

	proc.Kill()
	proc.Wait()
	start := time.Now()
	l2, err := e.AcquireLeader(ctx, LockInfo("watch"), 3*time.Second)
	if err != nil {
		t.Fatalf("acquire over a dead watcher on this host: %v", err)
	}
	defer l2.Release(ctx)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("take-over took %s", d)
	}
	if tk := l2.TookOver(); tk == nil || tk.ID != first.ID {
		t.Fatalf("TookOver = %+v, want the dead watcher", tk)
	}
	if err := l1.Verify(ctx); err == nil {
		t.Fatal("the dead watcher's lease still verifies")
	}
	select {
	case <-l1.Lost():
	default:
		t.Fatal("the replaced lease's Lost is open")
	}
}

// TestRecordPutIfStore: the store adapter turns the catalog's refusal into
// a GenerationMovedError that names both generations.
func TestRecordPutIfStore(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	cat := redis.New(r.Addr, "", 0, "fence")
	defer cat.Close()
	s := redisStore{cat}
	if err := s.PutRecordIf(ctx, state.ClusterRecord{Name: "fence", Primary: "db1", Generation: 1}, 0); err != nil {
		t.Fatal(err)
	}
	err := s.PutRecordIf(ctx, state.ClusterRecord{Name: "fence", Primary: "db2", Generation: 2}, 5)
	var ge *GenerationMovedError
	if !errors.Is(err, ErrGenerationMoved) || !errors.As(err, &ge) || ge.Expected != 5 || ge.Stored != 1 {
		t.Fatalf("stale write through the store: %v", err)
	}
}
