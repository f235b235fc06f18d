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
