package reconcile

import (
	"context"
	"slices"
	"testing"
)

// TestWatchObservesQuick: the watcher's check observes quickly (on
// Docker no probe container for a stopped one), and what it then runs
// observes in full under the lock: a stopped standby is healed by an
// apply whose plan saw everything.
func TestWatchObservesQuick(t *testing.T) {
	w, c, log := watcherOn(t, "")
	c.quick = nil
	if out := w.Tick(context.Background()); !out.Converged {
		t.Fatalf("a running cluster is not converged: %+v\n%s", out, log.String())
	}
	if want := []bool{true}; !slices.Equal(c.quick, want) {
		t.Fatalf("a converged check observed with quick = %v, want %v", c.quick, want)
	}
	c.quick = nil
	c.node("db3").running = false
	if out := w.Tick(context.Background()); out.Err != nil || len(out.Acted) == 0 {
		t.Fatalf("the stopped standby was not healed: %+v\n%s", out, log.String())
	}
	if !c.node("db3").running {
		t.Fatal("db3 still stopped")
	}
	if len(c.quick) < 2 || !c.quick[0] || slices.Contains(c.quick[1:], true) {
		t.Fatalf("observations of a healing check, quick = %v: want the check's quick, then only full ones (Run's)", c.quick)
	}
}
