package postgres

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/health"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/state"
)

// standbyTimeout is the wal_receiver_timeout pgha writes on a standby at
// the default check_interval, read from plan.DesiredSettings so that
// these tests measure what pgha really sets.
func standbyTimeout(t *testing.T) string {
	t.Helper()
	c := &config.Cluster{Name: "t", Primary: "db1", Runtime: config.Runtime{Kind: "local"},
		Failover: config.Failover{CheckInterval: time.Second},
		Nodes:    []*config.Node{{Name: "db1", Host: "127.0.0.1", Port: 1}, {Name: "db2", Host: "127.0.0.1", Port: 2}}}
	v := plan.DesiredSettings(c, c.Nodes[1], "db1")["wal_receiver_timeout"]
	if v == "" {
		t.Fatal("pgha sets no wal_receiver_timeout on standbys")
	}
	return v
}

// setReceiverTimeout sets wal_receiver_timeout on a running standby; a
// reload is enough (the running receiver re-reads it).
func setReceiverTimeout(t *testing.T, ctx context.Context, ep Endpoint, v string) {
	t.Helper()
	if err := Exec(ctx, ep, "ALTER SYSTEM SET wal_receiver_timeout = '"+v+"'"); err != nil {
		t.Fatal(err)
	}
	if err := Reload(ctx, ep); err != nil {
		t.Fatal(err)
	}
}

// receiverSample is one look at the standby's WAL receiver.
type receiverSample struct {
	pid    int
	status string
	age    time.Duration
}

func sampleReceiver(t *testing.T, ctx context.Context, ep Endpoint) receiverSample {
	t.Helper()
	conn, err := connect(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(conn)
	var s receiverSample
	var age float64
	err = conn.QueryRow(ctx, `SELECT COALESCE(pid, 0), COALESCE(status, ''),
  COALESCE(EXTRACT(EPOCH FROM now() - last_msg_receipt_time), -1)::float8 FROM pg_stat_wal_receiver`).Scan(&s.pid, &s.status, &age)
	if err != nil {
		t.Fatal(err)
	}
	s.age = time.Duration(age * float64(time.Second))
	return s
}

// oldestMessage samples the standby's last message age every 100 ms for
// d and returns the oldest seen (what the detector would have read at
// the worst moment), failing if the receiver changes or stops streaming.
func oldestMessage(t *testing.T, ctx context.Context, ep Endpoint, d time.Duration) time.Duration {
	t.Helper()
	first := sampleReceiver(t, ctx, ep)
	var oldest time.Duration
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		s := sampleReceiver(t, ctx, ep)
		if s.pid != first.pid || s.status != "streaming" {
			t.Fatalf("WAL receiver changed: pid %d %q, then pid %d %q (message age %s)", first.pid, first.status, s.pid, s.status, s.age)
		}
		oldest = max(oldest, s.age)
	}
	return oldest
}

// TestIdleStandbyHearsPrimary measures the gap between messages a
// standby's WAL receiver gets from an idle primary (no writes at all, as
// when pgha's heartbeat cannot reach it): over 12 s at PostgreSQL's
// default wal_receiver_timeout, then over 12 s at the one pgha sets for
// the default check_interval (1s). With pgha's it must stay under the
// detector's StaleAfter (2 s), or a primary cut off from pgha alone
// would be failed over; at the default it does not (which is why pgha
// sets it, and shows that the sampling sees a stale receiver).
func TestIdleStandbyHearsPrimary(t *testing.T) {
	p := testenv.StartPostgres(t)
	s := testenv.StartStandby(t, p, "db2", "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sep := endpoint(s)
	if err := WaitStreaming(ctx, sep); err != nil {
		t.Fatal(err)
	}
	stale := health.DefaultStaleAfter(time.Second)
	const window = 12 * time.Second

	atDefault := oldestMessage(t, ctx, sep, window)
	want := standbyTimeout(t)
	setReceiverTimeout(t, ctx, sep, want)
	time.Sleep(time.Second) // the last message before the reload may be old
	withPgha := oldestMessage(t, ctx, sep, window)
	t.Logf("idle primary, oldest standby message over %s: %s at wal_receiver_timeout = 60s (default), %s at %s (pgha's); the detector's StaleAfter is %s",
		window, atDefault.Round(time.Millisecond), withPgha.Round(time.Millisecond), want, stale)
	if withPgha >= stale {
		t.Errorf("with wal_receiver_timeout = %s the standby went %s without news of an idle primary: not under the detector's %s", want, withPgha, stale)
	}
	if atDefault < stale {
		t.Errorf("at PostgreSQL's default the standby never went %s without news (oldest %s): the sampling or PostgreSQL changed, and pgha's setting may be unneeded", stale, atDefault)
	}
}

// TestReceiverTimeoutUnderLoad runs pgbench on the primary (8 clients,
// PGHA_LOAD_SECONDS, default 10) with the standby at pgha's
// wal_receiver_timeout and checks that the short timeout costs no
// replication disconnect: the same WAL receiver streams throughout, and
// neither server log says a receiver or sender timed out.
func TestReceiverTimeoutUnderLoad(t *testing.T) {
	load := 10 * time.Second
	if v := os.Getenv("PGHA_LOAD_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("PGHA_LOAD_SECONDS=%q: %v", v, err)
		}
		load = time.Duration(n) * time.Second
	}
	p := testenv.StartPostgres(t)
	s := testenv.StartStandby(t, p, "db2", "")
	ctx, cancel := context.WithTimeout(context.Background(), load+2*time.Minute)
	defer cancel()
	sep := endpoint(s)
	if err := WaitStreaming(ctx, sep); err != nil {
		t.Fatal(err)
	}
	want := standbyTimeout(t)
	setReceiverTimeout(t, ctx, sep, want)
	n := &state.Node{}
	Observe(ctx, sep, n, nil)
	if got := n.Settings["wal_receiver_timeout"]; got.Value != "3000" || got.Unit != "ms" {
		t.Fatalf("standby's wal_receiver_timeout after the reload: %+v, want %s", got, want)
	}

	pgbench := func(args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(p.BinDir, "pgbench"), append([]string{"-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", p.User}, args...)...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+p.Password)
		return cmd
	}
	if out, err := pgbench("-i", "-s", "10", "-q", "postgres").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	if err := WaitStreaming(ctx, sep); err != nil {
		t.Fatal(err)
	}
	before := sampleReceiver(t, ctx, sep)
	bench := pgbench("-c", "8", "-j", "2", "-T", strconv.Itoa(int(load.Seconds())), "postgres")
	var out strings.Builder
	bench.Stdout, bench.Stderr = &out, &out
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- bench.Wait() }()
	var oldest time.Duration
	samples, restarts := 0, 0
	last := before
loop:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("pgbench: %v\n%s", err, out.String())
			}
			break loop
		case <-time.After(200 * time.Millisecond):
		}
		r := sampleReceiver(t, ctx, sep)
		samples++
		if r.pid != last.pid || r.status != "streaming" {
			restarts++
			t.Errorf("WAL receiver restarted under load: pid %d %q, then pid %d %q", last.pid, last.status, r.pid, r.status)
		}
		last = r
		oldest = max(oldest, r.age)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	tps := ""
	for _, l := range lines {
		if strings.HasPrefix(l, "tps") {
			tps = l
		}
	}
	t.Logf("%s of pgbench (8 clients) with wal_receiver_timeout = %s on the standby: %d samples, %d receiver restarts, oldest standby message %s; %s",
		load, want, samples, restarts, oldest.Round(time.Millisecond), tps)
	for _, srv := range []*testenv.Postgres{p, s} {
		log, err := os.ReadFile(filepath.Join(filepath.Dir(srv.DataDir), "log"))
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"terminating walreceiver due to timeout", "terminating walsender process due to replication timeout"} {
			if strings.Contains(string(log), bad) {
				t.Errorf("server log of port %d says %q", srv.Port, bad)
			}
		}
	}
}
