package reconcile

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/report"
)

// startSleeper starts a process that lives for 30 seconds: a lock holder
// on this host whose death the test then decides.
func startSleeper(t *testing.T) *os.Process {
	t.Helper()
	path, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("sleep is not on PATH (coreutils): %v", err)
	}
	p, err := os.StartProcess(path, []string{"sleep", "30"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHolderGone: only a holder on this host, in this boot, whose process
// is gone (or whose pid now runs another process) is declared dead;
// anything else is waited for.
func TestHolderGone(t *testing.T) {
	proc := startSleeper(t)
	live := LockInfo("apply")
	live.PID = proc.Pid
	live.Start, _ = processStart(proc.Pid)
	if holderGone(&live) {
		t.Fatal("a running holder was declared gone")
	}
	reused := live
	reused.Start++
	if !holderGone(&reused) {
		t.Fatal("a pid running another process (other start time) was not declared gone")
	}
	proc.Kill()
	proc.Wait()
	if !holderGone(&live) {
		t.Fatal("a dead holder on this host was not declared gone")
	}
	elsewhere := live
	elsewhere.Host = "another-host"
	if holderGone(&elsewhere) {
		t.Fatal("a holder on another host was declared gone")
	}
	old := live
	old.Boot = "a-previous-boot"
	old.PID = os.Getpid()
	if holderGone(&old) {
		// Same hostname, another boot ID: this machine rebooted, or a
		// clone of it runs that holder; only the lease's expiry can tell.
		t.Fatal("a holder with another boot ID was declared gone")
	}
	noBoot := live
	noBoot.Boot = ""
	if holderGone(&noBoot) {
		t.Fatal("a holder without boot ID (an older pgha) was declared gone")
	}
	otherNS := live
	otherNS.PIDNamespace = "pid:[1]"
	if holderGone(&otherNS) {
		t.Fatal("a holder in another pid namespace (a container) was declared gone")
	}
	self := LockInfo("apply")
	if holderGone(&self) {
		t.Fatal("this process was declared gone")
	}
}

// TestLockTakesOverDeadHolder: Lock replaces the lock of a dead pgha on
// this host at once and says whose; a lost lease cancels the context
// WhileHeld gives, with ErrLockLost as the cause.
func TestLockTakesOverDeadHolder(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	cat := redis.New(r.Addr, "", 0, "takeover")
	defer cat.Close()
	e := &Env{Cfg: &config.Cluster{Name: "takeover"}, Catalog: cat, store: redisStore{cat}}

	proc := startSleeper(t)
	dead := LockInfo("apply")
	dead.ID, dead.PID = "dead-holder", proc.Pid
	dead.Start, _ = processStart(proc.Pid)
	proc.Kill()
	proc.Wait()
	if _, err := cat.Acquire(ctx, dead, redis.AcquireOptions{}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	start := time.Now()
	lease, err := e.Lock(ctx, "apply", 0, &out)
	if err != nil {
		t.Fatalf("lock over a dead holder: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("take-over took %s", d)
	}
	host, _ := os.Hostname()
	want := "Took over the cluster lock of pid " + strconv.Itoa(dead.PID) + " on " + host + ", which is gone"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("lock output %q lacks %q", out.String(), want)
	}

	lctx, stop := WhileHeld(ctx, lease)
	defer stop()
	if err := e.ForceUnlock(ctx, lease.(*redis.Lease).ID()); err != nil {
		t.Fatal(err)
	}
	// The renewer notices at its next renewal (every TTL/3).
	select {
	case <-lctx.Done():
	case <-time.After(redis.DefaultLockTTL):
		t.Fatal("the apply context did not end after a force-unlock")
	}
	if !errors.Is(context.Cause(lctx), ErrLockLost) {
		t.Fatalf("cause = %v, want ErrLockLost", context.Cause(lctx))
	}
	_ = lease.Release(ctx)
}

// TestExecuteStopsWhenLockLost: an apply whose lease was lost starts no
// further action, and its error says why.
func TestExecuteStopsWhenLockLost(t *testing.T) {
	e := &Env{Cfg: &config.Cluster{Name: "lost"}}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(ErrLockLost)
	p := &plan.Plan{Actions: []plan.Action{{ID: "node.start[db1]", Kind: plan.NodeStart, Node: "db1"}, {ID: "catalog.record[cluster]", Kind: plan.CatalogRecord}}}
	var events eventLog
	err := e.Execute(ctx, p, &events)
	var ae *report.ApplyError
	if !errors.As(err, &ae) || !errors.Is(err, ErrLockLost) || ae.Failed != "node.start[db1]" || len(ae.Done) != 0 ||
		!strings.Contains(err.Error(), "not started: the cluster lock was lost") {
		t.Fatalf("Execute after the lock was lost: %v", err)
	}
	if len(events) != 0 {
		t.Fatalf("an action ran: %+v", events)
	}
}

// TestExecuteLockLostDuringAction: a lock lost while an action runs
// fails that action with context.Canceled from below; the error still
// carries ErrLockLost, so that pgha says the lock was lost and not
// "interrupted" (a CI run of TestLocalLockLost printed the latter).
func TestExecuteLockLostDuringAction(t *testing.T) {
	e, c := fakeEnv(t, "db1", "", nil)
	c.nodes["db2"].running = false
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	c.onCall = func(call string) {
		if strings.HasPrefix(call, "rt.Start db2") {
			cancel(ErrLockLost)
		}
	}
	p := &plan.Plan{Actions: []plan.Action{
		{ID: "node.start[db2]", Kind: plan.NodeStart, Node: "db2", Primary: "db1"},
		{ID: "catalog.record[cluster]", Kind: plan.CatalogRecord},
	}}
	err := e.Execute(ctx, p, nil)
	var ae *report.ApplyError
	if !errors.As(err, &ae) || ae.Failed != "node.start[db2]" || len(ae.NotAttempted) != 1 {
		t.Fatalf("Execute whose lock was lost during node.start: %v", err)
	}
	if !errors.Is(err, ErrLockLost) || !errors.Is(err, context.Canceled) {
		t.Fatalf("the error does not carry both the cancel and its cause: %v", err)
	}
	if !strings.Contains(err.Error(), "the cluster lock was lost") {
		t.Fatalf("the error does not say the lock was lost: %v", err)
	}
}

// signalCause is what os/signal.NotifyContext gives as the cause of a
// Ctrl-C: an error that is a context.Canceled.
type signalCause struct{}

func (signalCause) Error() string        { return "interrupt signal received" }
func (signalCause) Is(target error) bool { return target == context.Canceled }

// TestExecuteCtrlCKeepsTheActionsWords: an action interrupted by Ctrl-C
// that says what it left behind (pg_rewind's "its data directory stays
// where it was") does not become a context.Canceled through the cause,
// which pgha would print as a bare "interrupted" (a fresh run of
// TestLocalFailsafe did, once the lost-lock cause was wrapped).
func TestExecuteCtrlCKeepsTheActionsWords(t *testing.T) {
	e, c := fakeEnv(t, "db1", "", nil)
	c.nodes["db2"].running = false
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	said := errors.New("start of db2 interrupted: its data directory stays where it was")
	c.onCall = func(call string) {
		if strings.HasPrefix(call, "rt.Start db2") {
			cancel(signalCause{})
		}
	}
	c.fail["Start db2"] = said
	p := &plan.Plan{Actions: []plan.Action{{ID: "node.start[db2]", Kind: plan.NodeStart, Node: "db2", Primary: "db1"}}}
	err := e.Execute(ctx, p, nil)
	if !errors.Is(err, said) || errors.Is(err, context.Canceled) || errors.Is(err, ErrLockLost) {
		t.Fatalf("Execute interrupted by Ctrl-C: %v (is Canceled: %v)", err, errors.Is(err, context.Canceled))
	}
	if !strings.Contains(err.Error(), "interrupt signal received") {
		t.Fatalf("the error does not say why the context ended: %v", err)
	}
}
