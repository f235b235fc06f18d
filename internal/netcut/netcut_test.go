package netcut

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// listen accepts connections on a free loopback port until the test ends.
func listen(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// dial says why a connection to port failed within 300 ms (nil: it
// connected).
func dial(port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 300*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return err
}

func newCutter(t *testing.T) *Cutter {
	t.Helper()
	c, err := New("pgha-netcut-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n, err := c.Sweep(); err != nil || n > 0 {
			t.Errorf("%d rules of %s left behind (%v)", n, c.Tag, err)
		}
	})
	return c
}

// A cut port times out (dropped, not refused), other ports stay
// reachable, and undo brings it back, once however often it is called.
func TestCut(t *testing.T) {
	c := newCutter(t)
	port, other := listen(t), listen(t)
	if err := dial(port); err != nil {
		t.Fatalf("before the cut: %v", err)
	}
	undo, err := c.Cut(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = undo() })
	err = dial(port)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dialing the cut port: %v, want a timeout", err)
	}
	if err := dial(other); err != nil {
		t.Fatalf("another port was cut too: %v", err)
	}
	rules, err := c.tagged(func(tag string) bool { return tag == c.Tag })
	if err != nil || len(rules) != 4 {
		t.Fatalf("%d rules tagged %s (%v), want 4: %v", len(rules), c.Tag, err, rules)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if err := undo(); err != nil {
		t.Fatalf("a second undo: %v", err)
	}
	if err := dial(port); err != nil {
		t.Fatalf("after undo: %v", err)
	}
}

// Sweep removes a cut nobody undid; SweepDead removes the rules of a
// process that is gone and leaves a live one's.
func TestSweep(t *testing.T) {
	c := newCutter(t)
	port := listen(t)
	if _, err := c.Cut(port); err != nil {
		t.Fatal(err)
	}
	// The rules of a process that exited without undoing its cut.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := &Cutter{Tag: fmt.Sprintf("%s-%d", c.prefix, cmd.Process.Pid), prefix: c.prefix, bin: c.bin}
	deadPort := listen(t)
	if _, err := dead.Cut(deadPort); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = dead.Sweep() })
	tags, err := c.SweepDead()
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 1 || tags[0] != dead.Tag {
		t.Fatalf("SweepDead removed the rules of %v, want only %s (this process is %d)", tags, dead.Tag, os.Getpid())
	}
	if err := dial(deadPort); err != nil {
		t.Fatalf("the dead process's port is still cut: %v", err)
	}
	if dial(port) == nil {
		t.Fatal("SweepDead healed a live process's cut")
	}
	n, err := c.Sweep()
	if err != nil || n != 4 {
		t.Fatalf("Sweep removed %d rules (%v), want 4", n, err)
	}
	if err := dial(port); err != nil {
		t.Fatalf("after Sweep: %v", err)
	}
}
