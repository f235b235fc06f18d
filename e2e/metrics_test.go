package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pgha/pgha/state"
)

// TestLocalMetrics (issue 12's acceptance): GET /metrics of `pgha watch`
// over a three-node cluster passes `promtool check metrics` (Debian's
// prometheus package) before and after a failover, and says what
// happened:
//   - before: db1's role series is 1 for primary, every node is up, the
//     standbys' lag series are there, no failover counted, and the full
//     backup apply took, verified by `pgha backup verify`, shows as a
//     passed read verify;
//   - a standby whose replay is held (its startup process stopped) while
//     the primary writes shows a lag in bytes above zero, which falls
//     back once replay goes on;
//   - kill -9 of db1: once the watcher's failover is done,
//     pgha_failovers_total is one more, pgha_last_failover_timestamp_seconds
//     is the time of it, the new primary's role series is 1 and db1's 0,
//     the generation grew; once db1 rejoined, the lag series of both new
//     standbys are there.
//
// The exposition is parsed with prometheus/common/expfmt, as Prometheus
// reads it.
func TestLocalMetrics(t *testing.T) {
	c := newCluster(t, "local", 3)
	ctx := context.Background()
	c.setPolicy(policyFailover, watchDefaults)
	c.addBlock("  backup {\n    repository = \"./backups\"\n  }\n")
	a := c.enableAPI(true)
	c.mustPgha("apply", "-auto-approve")
	a.refreshCA()
	var listed struct{ Backups []state.Backup }
	if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &listed); err != nil || len(listed.Backups) != 1 {
		t.Fatalf("the first apply's full backup: %+v (%v)", listed, err)
	}
	full := listed.Backups[0]
	c.mustPgha("backup", "verify", full.ID)
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE m_writes (id int primary key, pad text)"); err != nil {
		t.Fatal(err)
	}

	ww := c.startWatch("w1")
	ww.waitLog(t, 0, "leader acquired", nil, 30*time.Second)
	a.waitUp(t, 15*time.Second)

	var before metricsScrape
	eventually(t, 20*time.Second, func() error {
		before = scrapeMetrics(t, a)
		if before.get("pgha_node_role", "node", "db1", "role", "primary") != 1 || before.get("pgha_leader_lease_held") != 1 {
			return fmt.Errorf("db1 not yet primary, or the lease not held:\n%s", before.grep("pgha_node_role", "pgha_leader_lease_held"))
		}
		for _, n := range []string{"db2", "db3"} {
			if _, ok := before.lookup("pgha_node_replication_lag_bytes", "node", n); !ok {
				return fmt.Errorf("no lag series for %s:\n%s", n, before.grep("pgha_node_replication_lag_bytes"))
			}
		}
		return nil
	})
	promtoolCheck(t, before.body)
	for _, n := range c.names {
		if v := before.get("pgha_node_up", "node", n); v != 1 {
			t.Errorf("pgha_node_up{node=%q} = %v before the failover", n, v)
		}
	}
	if v := before.get("pgha_failovers_total"); v != 0 {
		t.Errorf("pgha_failovers_total = %v before any failover", v)
	}
	if v := before.get("pgha_last_failover_timestamp_seconds"); v != 0 {
		t.Errorf("pgha_last_failover_timestamp_seconds = %v before any failover", v)
	}
	if v := before.get("pgha_catalog_up"); v != 1 {
		t.Errorf("pgha_catalog_up = %v", v)
	}
	if v := before.get("pgha_backup_last_success_timestamp_seconds", "type", "full"); v != unixSeconds(full.Finished) {
		t.Errorf("pgha_backup_last_success_timestamp_seconds{type=full} = %v, the backup finished at %v", v, full.Finished)
	}
	if ok := before.get("pgha_backup_last_verify_success", "type", "full", "mode", "read"); ok != 1 {
		t.Errorf("the full's verify: pgha_backup_last_verify_success{type=full,mode=read} = %v\n%s", ok, before.grep("pgha_backup_last_verify"))
	}
	if at := before.get("pgha_backup_last_verify_timestamp_seconds", "type", "full", "mode", "read"); at < unixSeconds(full.Finished) || at > unixSeconds(time.Now()) {
		t.Errorf("pgha_backup_last_verify_timestamp_seconds{type=full,mode=read} = %v", at)
	}

	wal0 := before.get("pgha_node_wal_position_bytes", "node", "db1", "kind", "current")
	t.Run("lag while db3's replay is held", func(t *testing.T) {
		c := c.with(t)
		resume := c.holdReplay("db3")
		defer resume()
		if _, err := c.conn(ctx, "db1").Exec(ctx, "INSERT INTO m_writes SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g"); err != nil {
			t.Fatal(err)
		}
		var lag float64
		eventually(t, 15*time.Second, func() error {
			s := scrapeMetrics(t, a)
			lag = s.get("pgha_node_replication_lag_bytes", "node", "db3")
			if wal := s.get("pgha_node_wal_position_bytes", "node", "db1", "kind", "current"); wal <= wal0 {
				return fmt.Errorf("db1's WAL position %v did not move past %v", wal, wal0)
			}
			if lag < 1<<20 {
				return fmt.Errorf("db3's lag is %v bytes with its replay held after ~6 MB of writes", lag)
			}
			return nil
		})
		t.Logf("db3's lag with its replay held: %.0f bytes", lag)
		resume()
		eventually(t, 30*time.Second, func() error {
			s := scrapeMetrics(t, a)
			if lag := s.get("pgha_node_replication_lag_bytes", "node", "db3"); lag > 64<<10 {
				return fmt.Errorf("db3's lag is still %v bytes after its replay went on", lag)
			}
			return nil
		})
	})

	m := ww.mark()
	t0 := time.Now()
	c.killPostmaster("db1")
	fo := ww.waitLog(t, m, "failover", map[string]string{"from": "db1"}, 30*time.Second)
	to := fo.field("to")
	if to != "db2" && to != "db3" {
		t.Fatalf("failover from db1 to %q: %s", to, fo.Line)
	}
	if done := ww.waitLog(t, m, "apply", map[string]string{"operation": "failover"}, 120*time.Second); done.field("outcome") != "done" {
		t.Fatalf("the failover: %s", done.Line)
	}
	// The new primary can show before the catalog records it (the
	// promotion comes first) and before the watcher counts the operation
	// (at its end): all three, eventually.
	var after metricsScrape
	eventually(t, 15*time.Second, func() error {
		after = scrapeMetrics(t, a)
		if after.get("pgha_node_role", "node", to, "role", "primary") != 1 {
			return fmt.Errorf("%s's role is not primary yet:\n%s", to, after.grep("pgha_node_role"))
		}
		if g0, g1 := before.get("pgha_cluster_generation"), after.get("pgha_cluster_generation"); g1 <= g0 {
			return fmt.Errorf("pgha_cluster_generation %v -> %v across the failover", g0, g1)
		}
		if v, w := after.get("pgha_failovers_total"), before.get("pgha_failovers_total")+1; v != w {
			return fmt.Errorf("pgha_failovers_total = %v after the failover, want %v", v, w)
		}
		return nil
	})
	promtoolCheck(t, after.body)
	if at := after.get("pgha_last_failover_timestamp_seconds"); at < unixSeconds(t0) || at > unixSeconds(time.Now()) {
		t.Errorf("pgha_last_failover_timestamp_seconds = %v, the kill was at %v", at, unixSeconds(t0))
	}
	if v := after.get("pgha_node_role", "node", "db1", "role", "primary"); v != 0 {
		t.Errorf("db1 (killed) still has role primary = %v", v)
	}

	// db1 rejoins as a standby of the new primary: both standbys' lag.
	ww.waitLog(t, m, "rejoin", map[string]string{"node": "db1"}, 90*time.Second)
	c.streamsFrom(ctx, t, "db1", to, 60*time.Second)
	eventually(t, 15*time.Second, func() error {
		after = scrapeMetrics(t, a)
		for _, n := range c.names {
			if n == to {
				continue
			}
			if after.get("pgha_node_role", "node", n, "role", "standby") != 1 {
				return fmt.Errorf("%s is not a standby yet:\n%s", n, after.grep("pgha_node_role"))
			}
			if _, ok := after.lookup("pgha_node_replication_lag_bytes", "node", n); !ok {
				return fmt.Errorf("no lag series for the new standby %s:\n%s", n, after.grep("pgha_node_replication_lag_bytes"))
			}
		}
		if _, ok := after.lookup("pgha_node_replication_lag_bytes", "node", to); ok {
			return fmt.Errorf("the new primary %s still has a lag series", to)
		}
		return nil
	})
	promtoolCheck(t, after.body)
	if v := after.get("pgha_failovers_total"); v != before.get("pgha_failovers_total")+1 {
		t.Errorf("pgha_failovers_total = %v after the rejoin: a rejoin is no failover", v)
	}
	t.Logf("failover to %s; pgha_failovers_total %v -> %v, last failover %.3f s after the kill", to,
		before.get("pgha_failovers_total"), after.get("pgha_failovers_total"), after.get("pgha_last_failover_timestamp_seconds")-unixSeconds(t0))
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// metricsScrape is one GET /metrics, parsed.
type metricsScrape struct {
	t    *testing.T
	body []byte
	fams map[string]*dto.MetricFamily
}

// scrapeMetrics GETs /metrics and parses it as Prometheus does.
func scrapeMetrics(t *testing.T, a *api) metricsScrape {
	t.Helper()
	code, body := a.do(t, "GET", a.url("/metrics"), "", false)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("GET /metrics does not parse: %v\n%s", err, body)
	}
	return metricsScrape{t: t, body: body, fams: fams}
}

// lookup is the value of the series of name whose labels hold the given
// pairs (name, value, name, value...).
func (s metricsScrape) lookup(name string, labels ...string) (float64, bool) {
	f := s.fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				ok = false
			}
		}
		if !ok {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// get is lookup's value; a series that is not there fails the test.
func (s metricsScrape) get(name string, labels ...string) float64 {
	s.t.Helper()
	v, ok := s.lookup(name, labels...)
	if !ok {
		s.t.Fatalf("GET /metrics has no %s%v:\n%s", name, labels, s.grep(name))
	}
	return v
}

// grep is the exposition's lines of the given families, for messages.
func (s metricsScrape) grep(names ...string) string {
	var out []string
	for _, l := range strings.Split(string(s.body), "\n") {
		for _, n := range names {
			if strings.HasPrefix(l, n) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// promtoolCheck runs `promtool check metrics` (Debian's prometheus
// package) on an exposition: it must find nothing.
func promtoolCheck(t *testing.T, body []byte) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed: run `make setup` (or apt-get install prometheus)")
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// holdReplay stops a standby's startup process (SIGSTOP): its WAL
// receiver goes on receiving, its replay stands still, as on a standby
// busy with a long replay conflict. The returned function lets it go on
// (once; also at cleanup).
func (c *cluster) holdReplay(node string) (resume func()) {
	c.t.Helper()
	pid := 0
	for _, p := range c.postgresPids(node)[1:] {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "cmdline"))
		if err == nil && strings.Contains(string(b), "startup") {
			pid = p
		}
	}
	if pid == 0 {
		c.t.Fatalf("%s has no startup process: is it a standby?", node)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		c.t.Fatalf("SIGSTOP %s's startup process: %v", node, err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	c.t.Cleanup(resume)
	return resume
}
