package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// TestHeartbeat: the first beat creates pgha.heartbeat and writes its row;
// a session holding an ACCESS EXCLUSIVE lock on the table makes the beat
// fail within its timeout, with ErrWriteTimeout, and the kept session is
// usable again once the lock is gone; so does a synchronous commit that
// waits for a standby that does not exist.
func TestHeartbeat(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ep := endpoint(p)
	ep.Name = "db1"
	if err := Heartbeat(ctx, ep, 2*time.Second); err != nil {
		t.Fatalf("first heartbeat: %v", err)
	}
	var node, at1, at2 string
	if err := queryOne(ctx, ep, "SELECT node || ' ' || count(*) OVER () FROM pgha.heartbeat WHERE id = 1", &node); err != nil || node != "db1 1" {
		t.Fatalf("heartbeat row: %q, %v", node, err)
	}
	_ = queryOne(ctx, ep, "SELECT at::text FROM pgha.heartbeat", &at1)

	h := NewHeartbeater(ep)
	defer h.Close()
	if err := h.Beat(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	_ = queryOne(ctx, ep, "SELECT at::text FROM pgha.heartbeat", &at2)
	if at2 <= at1 {
		t.Fatalf("the beat did not move the row: %s then %s", at1, at2)
	}
	kept := h.conn

	locker, err := connect(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(locker)
	if _, err := locker.Exec(ctx, "BEGIN; LOCK TABLE pgha.heartbeat IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	const timeout = 500 * time.Millisecond
	start := time.Now()
	err = h.Beat(ctx, timeout)
	took := time.Since(start)
	if !errors.Is(err, ErrWriteTimeout) {
		t.Fatalf("beat against a locked table: %v", err)
	}
	if took < timeout-100*time.Millisecond || took > timeout+300*time.Millisecond {
		t.Fatalf("the failed beat took %s, timeout %s", took, timeout)
	}
	t.Logf("locked: %v (after %s)", err, took.Round(time.Millisecond))
	if _, err := locker.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := h.Beat(ctx, time.Second); err != nil {
		t.Fatalf("beat after the lock was released: %v", err)
	}
	if h.conn == nil || h.conn == kept {
		t.Fatalf("a failed beat must drop its session (kept %p, now %p)", kept, h.conn)
	}
	again := h.conn
	if err := h.Beat(ctx, time.Second); err != nil || h.conn != again {
		t.Fatalf("a good beat keeps its session: %v", err)
	}

	// A synchronous_standby_names naming a standby that never comes:
	// clients' commits wait, but the beat commits locally
	// (synchronous_commit = local) and succeeds at once. Under
	// replication { synchronous } with too few standbys that wait is
	// expected (strict) and said by status and metrics; a beat that
	// waited too would make a working primary look lost.
	if err := Exec(ctx, ep, "ALTER SYSTEM SET synchronous_standby_names = 'nobody'"); err != nil {
		t.Fatal(err)
	}
	if err := Reload(ctx, ep); err != nil {
		t.Fatal(err)
	}
	waitSetting(ctx, t, ep, "synchronous_standby_names", "nobody")
	start = time.Now()
	err = Heartbeat(ctx, ep, timeout)
	if took = time.Since(start); err != nil || took > timeout/2 {
		t.Fatalf("beat with a synchronous standby missing: %v after %s", err, took)
	}
}

// TestHeartbeatReadOnly: a standby, and a primary with
// default_transaction_read_only, refuse the heartbeat with a
// ReadOnlyError that says which, never ErrWriteTimeout.
func TestHeartbeatReadOnly(t *testing.T) {
	p := testenv.StartPostgres(t)
	s := testenv.StartStandby(t, p, "db2", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pep, sep := endpoint(p), endpoint(s)
	pep.Name, sep.Name = "db1", "db2"

	// The table does not exist yet: the standby refuses to create it.
	err := Heartbeat(ctx, sep, 2*time.Second)
	var ro *ReadOnlyError
	if !errors.As(err, &ro) || !ro.InRecovery || ro.Node != "db2" || errors.Is(err, ErrWriteTimeout) {
		t.Fatalf("heartbeat on a standby: %v", err)
	}
	t.Logf("standby: %v", err)

	if err := Heartbeat(ctx, pep, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := Exec(ctx, pep, "ALTER SYSTEM SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}
	if err := Reload(ctx, pep); err != nil {
		t.Fatal(err)
	}
	waitSetting(ctx, t, pep, "default_transaction_read_only", "on")
	err = Heartbeat(ctx, pep, 2*time.Second)
	if !errors.As(err, &ro) || ro.InRecovery || ro.Node != "db1" || !ro.ReadOnly() {
		t.Fatalf("heartbeat with default_transaction_read_only: %v", err)
	}
	t.Logf("primary: %v", err)
	// And the table exists on the standby now (replicated): the INSERT is refused.
	if err := WaitReplayed(ctx, sep, currentLSN(ctx, t, pep)); err != nil {
		t.Fatal(err)
	}
	if err := Heartbeat(ctx, sep, 2*time.Second); !errors.As(err, &ro) || !ro.InRecovery {
		t.Fatalf("heartbeat on a standby with the table: %v", err)
	}
}

func waitSetting(ctx context.Context, t *testing.T, ep Endpoint, name, want string) {
	t.Helper()
	for {
		v, err := Setting(ctx, ep, name)
		if err == nil && v == want {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%s stayed %q (%v)", name, v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func currentLSN(ctx context.Context, t *testing.T, ep Endpoint) state.LSN {
	t.Helper()
	var s string
	if err := queryOne(ctx, ep, "SELECT pg_current_wal_lsn()::text", &s); err != nil {
		t.Fatal(err)
	}
	l, err := state.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// BenchmarkHeartbeat compares a heartbeat over a new connection each time
// (what Heartbeat does; with TLS and SCRAM) with one over a kept
// connection (Heartbeater), which is what a watcher checking every
// second should use: go test -run '^$' -bench Heartbeat ./providers/postgres/
func BenchmarkHeartbeat(b *testing.B) {
	p := testenv.StartPostgres(b)
	ctx := context.Background()
	plain, secure := tlsEndpoints(b, p)
	if err := Heartbeat(ctx, plain, 5*time.Second); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		ep   func() Endpoint
	}{{"plain", func() Endpoint { return plain }}, {"tls", secure}} {
		b.Run("new-connection-"+c.name, func(b *testing.B) {
			for range b.N {
				if err := Heartbeat(ctx, c.ep(), 5*time.Second); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("kept-connection-"+c.name, func(b *testing.B) {
			h := NewHeartbeater(c.ep())
			defer h.Close()
			for range b.N {
				if err := h.Beat(ctx, 5*time.Second); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
