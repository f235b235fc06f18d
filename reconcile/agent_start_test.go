package reconcile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/config/clusterfile"
	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/internal/proc"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// TestAgentLeavesAStartingStandbyAlone runs an agent against a real local
// server: a primary killed with SIGKILL, then started again as a standby,
// the way the watcher restarts a former primary that needs no pg_rewind.
// Until its startup process is done with the data directory (an fsync of
// every file after a crash, then recovery; a restore_command that sleeps
// stands in for a busy host here), postmaster.pid says "starting" and
// pg_control still says "in production". The agent, holding no member
// lease (its most eager case), checks all along: it must not stop the
// server, which comes up in recovery. Before PMStatus it did, and the
// watcher's start failed and fell back to pg_rewind (13 of 24 such
// starts in a fault campaign).
func TestAgentLeavesAStartingStandbyAlone(t *testing.T) {
	testenv.PGBinDir(t)
	dir := testenv.Dir(t)
	port := testenv.FreePort(t)
	src := fmt.Sprintf(`cluster "starting" {
  primary = "db1"
  postgres {
    password = "su-secret"
  }
  replication {
    password = "repl-secret"
  }
  runtime "local" {
    data_dir = %q
  }
  tls {
    enabled = false
  }
  agent {
    self_fence = "5s"
  }
  # Never dialled: the agent here holds no member lease.
  catalog "redis" {
    address = "127.0.0.1:1"
  }
  node "db1" {
    port = %d
  }
}
`, filepath.Join(dir, "data"), port)
	file := filepath.Join(dir, "cluster.hcl")
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	r := clusterfile.Parse([]byte(src), file)
	if r.Diags.HasErrors() {
		t.Fatalf("cluster.hcl: %v", r.Diags)
	}
	rt, err := OpenRuntime(r.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Cfg: r.Cluster, Runtime: rt}
	n := r.Cluster.Node("db1")
	ctx := context.Background()
	settings := map[string]string{"port": fmt.Sprint(port), "listen_addresses": "127.0.0.1", "unix_socket_directories": n.DataDir}
	hba := []string{"local all all peer"}
	for _, step := range []func() error{
		func() error { return rt.CreateNode(ctx, n) },
		func() error { return rt.InitDB(ctx, n) },
		func() error { return rt.Configure(ctx, n, settings, hba) },
		func() error { return rt.Start(ctx, n) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = rt.Stop(context.Background(), n, "immediate") })
	s := observeOne(ctx, e, n)
	if !s.Running || s.PMStatus != pgdata.PMReady {
		t.Fatalf("a started primary: running %v, postmaster.pid status %q, want ready", s.Running, s.PMStatus)
	}
	// The crash: every process of the server at once. PostgreSQL's next
	// start refuses while any of them is still a zombie (its socket lock
	// names the postmaster), so the test waits until they are reaped.
	tree := proc.Tree(s.PID)
	for _, pid := range tree {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		gone := 0
		for _, pid := range tree {
			if syscall.Kill(pid, 0) == syscall.ESRCH {
				gone++
			}
		}
		if gone == len(tree) && !observeOne(ctx, e, n).Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the killed server's %d processes are still there after 10 s", len(tree)-gone, len(tree))
		}
	}
	if cd, err := rt.ControlData(ctx, n); err != nil || cd["Database cluster state"] != "in production" {
		t.Fatalf("pg_control of the killed primary: %q, %v; want in production", cd["Database cluster state"], err)
	}
	settings["restore_command"] = "sleep 1; false"
	if err := rt.Configure(ctx, n, settings, hba); err != nil {
		t.Fatal(err)
	}
	if err := rt.SetStandby(ctx, n, true); err != nil {
		t.Fatal(err)
	}

	var log watchLog
	a := &Agent{Env: e, Node: "db1", Log: log.logger()}
	started := make(chan error, 1)
	go func() { started <- rt.Start(ctx, n) }()
	var checks, whileStarting int
	var startErr error
loop:
	for {
		select {
		case startErr = <-started:
			break loop
		case <-time.After(50 * time.Millisecond):
		}
		if o := observeOne(ctx, e, n); o.Running && pgdata.Starting(o.PMStatus) {
			whileStarting++
		}
		a.check(ctx)
		checks++
	}
	if startErr != nil {
		t.Fatalf("the start as a standby failed (the agent stopped it?): %v", startErr)
	}
	if f := log.records(t, "fence"); len(f) > 0 {
		t.Fatalf("the agent fenced a server starting as a standby: %v", f[0])
	}
	if whileStarting < 3 {
		t.Fatalf("the server was seen starting at %d of %d checks: the test did not show the window it is about", whileStarting, checks)
	}
	cd, err := rt.ControlData(ctx, n)
	if err != nil || !strings.Contains(cd["Database cluster state"], "recovery") {
		t.Fatalf("pg_control after the start: %q, %v; want in recovery", cd["Database cluster state"], err)
	}
	s = observeOne(ctx, e, n)
	if !s.Running || !s.StandbySignal {
		t.Fatalf("after the start: running %v, standby.signal %v", s.Running, s.StandbySignal)
	}
	t.Logf("%d agent checks, %d of them while postmaster.pid said starting and pg_control in production or in recovery", checks, whileStarting)
}

// observeOne is the runtime's quick observation of one node.
func observeOne(ctx context.Context, e *Env, n *config.Node) *state.Node {
	s := &state.Cluster{Name: e.Cfg.Name, Nodes: []*state.Node{{Name: n.Name, Port: n.Port, DataDir: n.DataDir}}}
	e.Runtime.Observe(ctx, s, func(*config.Node, *state.Node) {}, ObserveOptions{Quick: true, NoAside: true})
	return s.Nodes[0]
}
