package proc

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tail := " 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 424242 19 20"
	for _, tc := range []struct {
		name, line string
		want       Stat
		err        bool
	}{
		{"plain", "123 (postgres) S 45" + tail, Stat{PID: 123, Comm: "postgres", State: 'S', PPID: 45, StartTime: 424242}, false},
		{"zombie", "7 (postgres) Z 1" + tail, Stat{PID: 7, Comm: "postgres", State: 'Z', PPID: 1, StartTime: 424242}, false},
		{"comm with ') ' and spaces", "9 (a) b (c) d) R 2" + tail, Stat{PID: 9, Comm: "a) b (c) d", State: 'R', PPID: 2, StartTime: 424242}, false},
		{"no parentheses", "9 postgres S 2" + tail, Stat{}, true},
		{"short", "9 (x) S 2 3", Stat{}, true},
		{"bad pid", "x (x) S 2" + tail, Stat{}, true},
		{"bad ppid", "9 (x) S p" + tail, Stat{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.line)
			if tc.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Parse(%q) = %+v, %v; want ErrMalformed", tc.line, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
			}
		})
	}
	if !(Stat{State: 'Z'}).Exited() || !(Stat{State: 'X'}).Exited() || (Stat{State: 'S'}).Exited() {
		t.Error("Exited: Z and X exited, S not")
	}
}

// TestTable: this process is in the table with its parent; a child
// started by it is among its children and in its tree, and once it has
// exited and not yet been reaped it is a zombie (Exited).
func TestTable(t *testing.T) {
	self, err := Read(os.Getpid())
	if err != nil || self.PPID != os.Getppid() || self.StartTime == 0 || self.Exited() {
		t.Fatalf("Read(self) = %+v, %v", self, err)
	}
	if _, err := Read(1 << 30); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read of a pid that does not exist: %v, want os.ErrNotExist", err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if !slices.Contains(Children(os.Getpid()), child) {
		t.Errorf("Children(self) lacks the child %d", child)
	}
	if tree := Tree(os.Getpid()); tree[0] != os.Getpid() || !slices.Contains(tree, child) {
		t.Errorf("Tree(self) = %v: want self first and the child %d", tree, child)
	}
	if slices.Contains(Tree(1, 0, -1), 1) {
		t.Error("Tree includes pid 1")
	}
	// Killed and not waited for: a zombie.
	_ = cmd.Process.Signal(os.Kill)
	for range 200 {
		if s, err := Read(child); err == nil && s.Exited() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("the killed, unreaped child %d never showed as exited", child)
}
