package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The write probe. "It answers SELECT 1" is how a wedged primary stays
// reported healthy for hours: a lock on a hot table, a full disk, a
// synchronous commit waiting for a standby that is gone. The watcher
// instead commits a row in a table of pgha's own on the primary every
// check, under a timeout, and counts a write that does not commit in time
// as a failed check. The row also makes WAL every check, so the standbys'
// WAL receivers hear the primary at least that often: their last
// message's age then tells a silent primary from a live one.
const (
	qHeartbeatSchema = `CREATE SCHEMA IF NOT EXISTS pgha`
	qHeartbeatTable  = `CREATE TABLE IF NOT EXISTS pgha.heartbeat (id int PRIMARY KEY, at timestamptz NOT NULL, node text NOT NULL)`
	qHeartbeat       = `INSERT INTO pgha.heartbeat (id, at, node) VALUES (1, now(), $1)
  ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at, node = EXCLUDED.node`
)

// ErrWriteTimeout is a heartbeat that did not commit within its timeout:
// the write path is wedged (a lock, a full disk, a synchronous commit
// waiting) or the server is too slow to answer.
var ErrWriteTimeout = errors.New("write timed out")

// ReadOnlyError is a server that refuses writes by its own state: it is in
// recovery (a standby), or default_transaction_read_only is on.
// health.Detector tells it from a wedged write path by its ReadOnly
// method: failing over does not fix a setting.
type ReadOnlyError struct {
	Node       string
	InRecovery bool
}

func (e *ReadOnlyError) Error() string {
	if e.InRecovery {
		return e.Node + " refuses writes: it is in recovery (a standby)"
	}
	return e.Node + " refuses writes: default_transaction_read_only is on"
}

// ReadOnly marks the error for health.Detector.
func (e *ReadOnlyError) ReadOnly() bool { return true }

// Heartbeat writes the heartbeat row on the primary at ep over a new
// connection, and fails unless it committed within timeout (connection
// included). A watcher checking every second keeps a Heartbeater instead
// (BenchmarkHeartbeat: a new TLS connection with SCRAM costs far more
// than the write).
func Heartbeat(ctx context.Context, ep Endpoint, timeout time.Duration) error {
	h := NewHeartbeater(ep)
	defer h.Close()
	return h.Beat(ctx, timeout)
}

// Heartbeater writes the heartbeat row over one connection kept between
// beats; any failure closes it, and the next beat connects afresh. Make
// one per primary: it never follows a failover. Not safe for concurrent
// use.
type Heartbeater struct {
	ep      Endpoint
	conn    *pgx.Conn
	created bool // the table is known to exist
}

// NewHeartbeater returns a Heartbeater for the primary at ep; it connects
// at the first beat.
func NewHeartbeater(ep Endpoint) *Heartbeater { return &Heartbeater{ep: ep} }

// Close ends the kept connection.
func (h *Heartbeater) Close() {
	if h.conn != nil {
		closeConn(h.conn)
		h.conn = nil
	}
}

// Beat writes the heartbeat row (schema and table created if missing)
// and returns nil only when it committed within timeout, connecting
// first when no connection is kept. The server cancels the write itself
// (statement_timeout, set to what is left of timeout) so that the session
// stays usable; the context is the backstop for a server that does not
// answer at all, and for a commit waiting for a synchronous standby
// (PostgreSQL disarms statement_timeout before it commits): pgx then
// cancels the wait and drops the session. A commit that returned only
// because the server gave up waiting (a WARNING, the row committed
// locally) took the whole timeout, and fails too.
func (h *Heartbeater) Beat(ctx context.Context, timeout time.Duration) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := h.beat(ctx, start, timeout)
	if err != nil {
		h.Close()
		if ctx.Err() != nil && !errors.Is(err, ErrWriteTimeout) {
			err = fmt.Errorf("%w after %s: %v", ErrWriteTimeout, timeout, err)
		}
		return fmt.Errorf("heartbeat on %s: %w", h.ep.name(), err)
	}
	return nil
}

func (h *Heartbeater) beat(ctx context.Context, start time.Time, timeout time.Duration) error {
	if h.conn == nil {
		conn, err := connect(ctx, h.ep)
		if err != nil {
			return err
		}
		h.conn = conn
	}
	left := timeout - time.Since(start) - 50*time.Millisecond
	if left < 10*time.Millisecond {
		return fmt.Errorf("%w after %s: connecting took %s", ErrWriteTimeout, timeout, time.Since(start).Round(time.Millisecond))
	}
	err := h.write(ctx, left)
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && !h.created && (pe.Code == "42P01" || pe.Code == "3F000") {
		// undefined table or schema: the first beat on this cluster
		if err = h.create(ctx); err == nil {
			err = h.write(ctx, timeout-time.Since(start)-50*time.Millisecond)
		}
	}
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == "25006": // read_only_sql_transaction
		return h.readOnly(ctx)
	case errors.As(err, &pe) && pe.Code == "57014": // query_canceled: statement_timeout
		return fmt.Errorf("%w after %s (a lock, a full disk, an I/O stall, or a server too busy to write): %v",
			ErrWriteTimeout, timeout, err)
	case err != nil:
		return err
	}
	if took := time.Since(start); took >= timeout-50*time.Millisecond {
		return fmt.Errorf("%w: the commit took %s of %s (a synchronous commit the server stopped waiting for?)",
			ErrWriteTimeout, took.Round(time.Millisecond), timeout)
	}
	h.created = true
	return nil
}

// write sets the statement timeout and upserts the row in one round trip.
func (h *Heartbeater) write(ctx context.Context, timeout time.Duration) error {
	if timeout < 10*time.Millisecond {
		timeout = 10 * time.Millisecond
	}
	b := &pgx.Batch{}
	b.Queue(fmt.Sprintf("SET statement_timeout = %d", timeout.Milliseconds()))
	// The probe checks the primary's own write path, not its standbys:
	// under synchronous replication with too few standbys (strict) every
	// commit waits, and a probe that waited too would make a primary
	// that works look lost.
	b.Queue("SET synchronous_commit = local")
	b.Queue(qHeartbeat, h.ep.name())
	return h.conn.SendBatch(ctx, b).Close()
}

func (h *Heartbeater) create(ctx context.Context) error {
	for _, q := range []string{qHeartbeatSchema, qHeartbeatTable} {
		if _, err := h.conn.Exec(ctx, q); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "25006" {
				return err // read-only: reported as such by the caller
			}
			return fmt.Errorf("create the heartbeat table: %w", err)
		}
	}
	return nil
}

// readOnly says why the server refused the write.
func (h *Heartbeater) readOnly(ctx context.Context) error {
	e := &ReadOnlyError{Node: h.ep.name()}
	if err := h.conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&e.InRecovery); err != nil {
		return fmt.Errorf("%w (and asking why failed: %v)", e, err)
	}
	return e
}
