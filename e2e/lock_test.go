package e2e

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLocalLockLost: an apply whose lock is broken under it (force-unlock)
// stops at the next safe point, saying the lock was lost and what it did
// not attempt; the next apply finishes the cluster.
func TestLocalLockLost(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "local", 3)
	cmd := c.command(context.Background(), "apply", "-auto-approve")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	seen := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		fired := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !fired && strings.Contains(sc.Text(), "node.start[db1]: done") {
				// Frozen while its lock is broken: otherwise, on a fast
				// machine, the rest of the apply (two clones) could end
				// before force-unlock does, and there would be nothing
				// left for the lost lock to stop.
				_ = cmd.Process.Signal(syscall.SIGSTOP)
				fired = true
				close(seen)
			}
		}
		if !fired {
			close(seen)
		}
	}()
	<-seen
	ctx := context.Background()
	cat := c.catalog()
	_, _, lock, err := cat.Observe(ctx)
	if err != nil || lock == nil {
		t.Fatalf("no lock while apply runs: %v %v", lock, err)
	}
	broken := time.Now()
	c.mustPgha("force-unlock", lock.ID)
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("resume the apply: %v", err)
	}

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("apply still runs 30 s after its lock was broken:\n%s", out.String())
	}
	stopped := time.Since(broken)
	if err == nil {
		t.Fatalf("apply succeeded without its lock:\n%s", out.String())
	}
	for _, want := range []string{"the cluster lock was lost", "not attempted:"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("apply's error lacks %q:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "not attempted: 0") {
		t.Errorf("the apply finished everything although its lock was broken:\n%s", stderr.String())
	}
	// The lease is renewed every 3 s: the loss is seen at the next renewal.
	if stopped > 10*time.Second {
		t.Errorf("apply stopped %s after the lock was broken", stopped.Round(time.Millisecond))
	}
	c.noSecret("the apply whose lock was broken", out.String()+stderr.String())
	t.Logf("apply stopped %s after force-unlock:\n%s", stopped.Round(time.Millisecond), stderr.String())
	c.mustPgha("apply", "-auto-approve")
	if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
		t.Fatalf("not converged:\n%s", r)
	}
}
