package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pgha/pgha/providers/postgres"
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

// The watcher's quick observation gives each node 3/4 of the check
// interval to answer (at least 500 ms), so that a paused primary, which
// accepts connections and says nothing, fails each check within its
// interval; a full observation (plan, apply) still gives ObserveTimeout.
func TestQuickObservationNodeTimeout(t *testing.T) {
	for _, tc := range []struct {
		interval string
		quick    bool
		want     time.Duration
	}{
		{"1s", true, 750 * time.Millisecond},
		{"1s", false, ObserveTimeout},
		{"200ms", true, 500 * time.Millisecond},
		{"10s", true, ObserveTimeout},
	} {
		t.Run(fmt.Sprintf("%s quick=%v", tc.interval, tc.quick), func(t *testing.T) {
			e, c := fakeEnv(t, "db1", fmt.Sprintf("failover {\n check_interval = %q\n}", tc.interval), nil)
			c.node("db1").running, c.node("db1").data = true, true
			e.ObserveWith(context.Background(), ObserveOptions{Quick: tc.quick})
			got := c.node("db1").budget
			// The deadline is read a moment after it was set.
			if got > tc.want || got < tc.want-200*time.Millisecond {
				t.Errorf("a node observation allowed %s, want %s", got, tc.want)
			}
		})
	}
}

// TestUnwritable: a write probe that failed because the server refused or
// dropped the write makes the primary unwritable for the API's /primary;
// one that was only slow does not.
func TestUnwritable(t *testing.T) {
	dead := errors.New("heartbeat on db1: FATAL: terminating connection due to unexpected postmaster exit (SQLSTATE 57P01)")
	slow := fmt.Errorf("heartbeat on db1: %w after 500ms: context deadline exceeded", postgres.ErrWriteTimeout)
	if got := unwritable(dead); got != dead.Error() {
		t.Errorf("unwritable(postmaster exit) = %q", got)
	}
	if got := unwritable(slow); got != "" {
		t.Errorf("unwritable(timeout) = %q, want empty", got)
	}
	if got := unwritable(nil); got != "" {
		t.Errorf("unwritable(nil) = %q, want empty", got)
	}
}
