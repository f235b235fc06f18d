package postgres

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/health"
	"github.com/pgha/pgha/internal/proc"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// TestDetectOnRealNodes runs the detector on real observations: a
// primary and its streaming standby with heartbeats are healthy; with
// every process of the primary paused (SIGSTOP) it is unreachable and
// the standby's last message ages until it confirms, lost after the
// threshold, not as a crash; resumed, healthy again; a postmaster killed
// with SIGKILL is lost as a crash within a few checks, the standby
// agreeing (its WAL receiver gone) instead of vetoing.
func TestDetectOnRealNodes(t *testing.T) {
	p := testenv.StartPostgres(t)
	s := testenv.StartStandby(t, p, "db2", "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pep, sep := endpoint(p), endpoint(s)
	pep.Name, sep.Name = "db1", "db2"
	if err := WaitStreaming(ctx, sep); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Cluster{Name: "t", Primary: "db1", Runtime: config.Runtime{Kind: "local"},
		Nodes: []*config.Node{{Name: "db1", Host: p.Host, Port: p.Port}, {Name: "db2", Host: s.Host, Port: s.Port}}}
	det := health.New(health.Config{Threshold: 3, Interval: 500 * time.Millisecond}) // StaleAfter 1s
	hb := NewHeartbeater(pep)
	defer hb.Close()
	pid := postmasterPID(t, p)
	check := func() health.Verdict {
		db1, db2 := &state.Node{Name: "db1", Initialized: true}, &state.Node{Name: "db2", Initialized: true, Running: true}
		for _, o := range []struct {
			ep Endpoint
			n  *state.Node
		}{{pep, db1}, {sep, db2}} {
			cctx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
			Observe(cctx, o.ep, o.n, nil)
			cancel()
		}
		var probe error
		if db1.Reachable {
			probe = hb.Beat(ctx, 400*time.Millisecond)
		}
		db1.Running = aliveNotZombie(pid)
		return det.Update(health.FromCluster(cfg, &state.Cluster{Nodes: []*state.Node{db1, db2}}, "db1", probe))
	}
	for i := range 3 {
		if v := check(); v.Status != health.Healthy {
			t.Fatalf("check %d of a healthy pair: %s %s", i, v.Status, v.Reason)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Every process of the primary paused: unreachable, and the standby
	// hears nothing, so after three failed checks it confirms.
	group := append([]int{pid}, proc.Children(pid)...)
	signal := func(sig syscall.Signal) {
		for _, p := range group {
			if err := syscall.Kill(p, sig); err != nil && err != syscall.ESRCH {
				t.Fatalf("signal %d: %v", p, err)
			}
		}
	}
	signal(syscall.SIGSTOP)
	var v health.Verdict
	for i := 0; i < 8 && v.Status != health.Lost; i++ {
		v = check()
		t.Logf("paused, check %d: %s %s", i+1, v.Status, v.Reason)
		if v.Status == health.Healthy {
			signal(syscall.SIGCONT)
			t.Fatal("a paused primary checked healthy")
		}
		time.Sleep(100 * time.Millisecond)
	}
	signal(syscall.SIGCONT)
	if v.Status != health.Lost || v.ProcessDead || v.Failures < 3 || !slices.Equal(v.Confirmed, []string{"db2"}) {
		t.Fatalf("paused primary: %+v", v)
	}
	for v = check(); v.Status != health.Healthy; v = check() {
		if ctx.Err() != nil {
			t.Fatalf("resumed primary never healthy: %s", v.Reason)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The postmaster killed: its WAL sender and sessions die with it.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	v = health.Verdict{}
	for i := 0; i < 5 && v.Status != health.Lost; i++ {
		v = check()
		t.Logf("after SIGKILL, check %d: %s %s", i+1, v.Status, v.Reason)
		time.Sleep(100 * time.Millisecond)
	}
	if v.Status != health.Lost || !v.ProcessDead || v.Failures > 3 || !slices.Equal(v.Confirmed, []string{"db2"}) {
		t.Fatalf("after SIGKILL of the postmaster: %+v", v)
	}
}
