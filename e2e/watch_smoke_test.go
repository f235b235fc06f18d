package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestLocalWatchSmoke: `pgha watch -log-format json` on a converged
// three-node cluster with primary_crash = "failover" fails over a primary
// whose postmaster was killed -9, the third node following the new one;
// restarts a standby stopped by hand; and exits 0 on SIGTERM. The full
// scenario matrix (both runtimes, writing clients) is in the watch
// scenario tests; this one shows the command works end to end.
func TestLocalWatchSmoke(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "local", 3)
	ctx := context.Background()
	c.setPolicy("maximum_lag   = \"64kB\"\nprimary_crash = \"failover\"", "")
	c.mustPgha("apply", "-auto-approve")
	// -once on a converged cluster: one iteration, nothing done, exit 0.
	if r := c.pgha("watch", "-once", "-log-format", "json"); r.code != 0 || strings.Contains(r.stderr, `"msg":"apply"`) {
		t.Fatalf("watch -once on a converged cluster: %s", r)
	}

	w := c.startWatch("smoke")
	w.waitLog(t, 0, "watch started", nil, 15*time.Second)
	// Converged: an iteration ran and found nothing to do or hold.
	time.Sleep(2 * time.Second)
	if r := w.records(0, "apply", nil); len(r) > 0 {
		t.Errorf("the watcher acted on a converged cluster: %s", r[0].Line)
	}
	// status names the watcher that acts (the leader lease's holder).
	if r := c.pgha("status"); r.code != 0 || !strings.Contains(r.stdout, "Watch leader: ") || strings.Contains(r.stdout, "Watch leader: none") {
		t.Errorf("status while pgha watch runs does not name the leader:\n%s", r)
	}
	var st struct {
		Catalog struct {
			Leader *struct{ Operation string } `json:"leader"`
		} `json:"catalog"`
	}
	if r := c.pgha("status", "-json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.Catalog.Leader == nil || st.Catalog.Leader.Operation != "watch" {
		t.Errorf("status -json while pgha watch runs has no catalog.leader of operation watch:\n%s", r)
	}

	// An invalid edit changes nothing and says where it is wrong.
	good, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	from := w.mark()
	c.write(strings.Replace(string(good), "primary_crash = \"failover\"", "primary_crash = \"reboot\"", 1))
	inv := w.waitLog(t, from, "config invalid", nil, 10*time.Second)
	if d := inv.field("diagnostic"); !strings.Contains(d, "Invalid primary_crash") || !strings.Contains(d, c.file+":") {
		t.Errorf("diagnostic without summary or file:line:col: %s", d)
	}
	c.write(string(good))

	from = w.mark()
	t0 := time.Now()
	c.killPostmaster("db1")
	lost := w.waitLog(t, from, "primary lost", map[string]string{"node": "db1"}, 15*time.Second)
	fo := w.waitLog(t, from, "failover", map[string]string{"from": "db1"}, 15*time.Second)
	to := fo.field("to")
	if to != "db2" && to != "db3" {
		t.Fatalf("failover to %q: %s", to, fo.Line)
	}
	w.waitLog(t, from, "apply", map[string]string{"operation": "failover", "outcome": "done"}, 15*time.Second)
	eventually(t, 15*time.Second, func() error {
		if !c.writable(ctx, to) {
			return errors.New(to + " does not take writes yet")
		}
		return nil
	})
	took := time.Since(t0)
	other := map[string]string{"db2": "db3", "db3": "db2"}[to]
	c.streamsFrom(ctx, t, other, to, 15*time.Second)
	t.Logf("kill -9 of db1 → %s writable in %s (lost after %s); reason: %s", to, took.Round(time.Millisecond),
		lost.Time.Sub(t0).Round(time.Millisecond), lost.field("reason"))

	// A standby stopped by hand is started again.
	from = w.mark()
	c.pgctl(other, "stop", "-m", "fast")
	w.waitLog(t, from, "heal", map[string]string{"action": "node.start[" + other + "]"}, 15*time.Second)
	c.streamsFrom(ctx, t, other, to, 20*time.Second)

	w.stop(t)
	// SIGTERM released the lease: nobody leads.
	if r := c.pgha("status"); r.code != 0 || !strings.Contains(r.stdout, "Watch leader: none") {
		t.Errorf("status after the watcher stopped still names a leader:\n%s", r)
	}
	if len(w.records(0, "stopping", nil)) != 1 || len(w.records(0, "config changed", nil)) != 0 {
		t.Errorf("no stopping record, or the invalid edit changed the configuration:\n%s", w.tail(20))
	}
}
