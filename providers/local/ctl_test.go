package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/proc"
	"github.com/pgha/pgha/internal/testenv"
)

// TestAwaitDeadPostmaster: a start right after a crash waits for the
// crashed postmaster's zombie to be reaped (PostgreSQL refuses to start
// while its pid answers kill(pid, 0)), then finds the stale file gone.
func TestAwaitDeadPostmaster(t *testing.T) {
	dir := t.TempDir()
	zombie := exec.Command("true")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	// Not waited for: it exits and stays a zombie until Wait below.
	eventuallyZombie := time.Now().Add(5 * time.Second)
	for alive(zombie.Process.Pid) && time.Now().Before(eventuallyZombie) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(zombie.Process.Pid) || syscall.Kill(zombie.Process.Pid, 0) != nil {
		t.Fatal("no zombie to test with")
	}
	pidfile := filepath.Join(dir, "postmaster.pid")
	if err := os.WriteFile(pidfile, []byte(fmt.Sprintf("%d\n%s\n", zombie.Process.Pid, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan time.Time, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = zombie.Wait()
		reaped <- time.Now()
	}()
	if err := awaitDeadPostmaster(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	if at := <-reaped; returned.Before(at) {
		t.Fatalf("returned %s before the zombie was reaped", at.Sub(returned))
	}
	if _, err := os.Stat(pidfile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the stale pid file is still there: %v", err)
	}
}

// TestStopImmediatePaused: an immediate stop of a server whose postmaster
// and children are all stopped by SIGSTOP (a frozen primary being fenced)
// kills every one of them, at once rather than after the SIGQUIT a
// stopped process cannot act on, so that the node can start again (a
// backend left alive holds the shared memory) and none can acknowledge a
// write when continued. A running server stops the same way.
func TestStopImmediatePaused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := New(Options{RunAs: testenv.RunAs(t)})
	if err != nil {
		t.Fatal(err)
	}
	root := testenv.Dir(t)
	dir, logFile := filepath.Join(root, "data", "db1"), filepath.Join(root, "data", "log", "db1.log")
	t.Cleanup(func() { _ = r.Stop(context.Background(), dir, "immediate") })
	if err := r.CreateDataDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := r.InitDB(ctx, dir, "postgres", "pw"); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePorts(t, 1)[0]
	if err := r.Configure(dir, map[string]string{"port": fmt.Sprint(port), "listen_addresses": "127.0.0.1", "unix_socket_directories": "", "fsync": "off"},
		[]string{"local all all peer"}); err != nil {
		t.Fatal(err)
	}
	for _, paused := range []bool{true, false} {
		if err := r.Start(ctx, dir, logFile); err != nil {
			t.Fatalf("Start (after a stop of a paused server: %v): %v", !paused, err)
		}
		pm, running, _ := r.postmaster(dir)
		pid := pm.PID
		if !running {
			t.Fatal("no postmaster after Start")
		}
		tree := proc.Tree(pid)
		if len(tree) < 4 {
			t.Fatalf("the postmaster has too few children to be a server: %v", tree)
		}
		t.Cleanup(func() {
			for _, p := range tree {
				_ = syscall.Kill(p, syscall.SIGCONT)
			}
		})
		if paused {
			for _, p := range tree {
				if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t0 := time.Now()
		if err := r.Stop(ctx, dir, "immediate"); err != nil {
			t.Fatalf("Stop immediate (paused %v): %v", paused, err)
		}
		took := time.Since(t0)
		for _, p := range tree {
			if st, err := proc.Read(p); err == nil && !st.Exited() {
				t.Errorf("process %d (%s, state %c) of the server left after an immediate stop (paused %v)", p, st.Comm, st.State, paused)
			}
		}
		t.Logf("immediate stop, paused %v: %s", paused, took.Round(time.Millisecond))
		if paused && took > 2500*time.Millisecond {
			t.Errorf("the immediate stop of a paused server took %s: it waited for the SIGQUIT a stopped process cannot act on", took.Round(time.Millisecond))
		}
	}
}
