// Package postgres observes and changes one PostgreSQL server through pgx:
// what it is (primary or standby, timeline, LSNs, slots, settings, roles) and
// the few SQL-level actions pgha needs (roles, slots, reload, waits).
package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Endpoint says how to reach a server as a given user.
type Endpoint struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string // "" = postgres
	// TLS, when set, is tried first and must verify the server (pgha's
	// verify-full); only a server that refuses TLS outright (ssl = off:
	// a cluster that TLS is being turned on for) is then reached in
	// plain text, and its pg_hba.conf has no hostssl lines yet. nil =
	// plain text.
	TLS *tls.Config
	// RequireTLS forbids that fallback: pgha knows the server serves TLS
	// (it had a verified session with it since it turned ssl on), so a
	// refusal is a server whose ssl was turned off behind pgha's back or
	// someone in between answering "no TLS" to downgrade the session,
	// and the connection fails instead.
	RequireTLS bool
	// Name is the node's name, for messages; "" = host:port.
	Name string
}

func (e Endpoint) String() string { return fmt.Sprintf("%s:%d", e.Host, e.Port) }

// connect opens one connection. The password is set on the parsed config,
// never written into a connection string, so no error can carry it. TLS
// is pgha's own (Endpoint.TLS): the empty ssl* keywords keep an
// operator's PGSSLROOTCERT or PGSSLCERT, which pgx reads from the
// environment, out of it.
// The simple protocol lets a batch go out in a single round trip.
func connect(ctx context.Context, ep Endpoint) (*pgx.Conn, error) {
	conn, _, err := open(ctx, ep)
	return conn, err
}

// open is connect that also reports whether the session is TLS
// (verified against Endpoint.TLS's roots and name).
func open(ctx context.Context, ep Endpoint) (*pgx.Conn, bool, error) {
	db := ep.Database
	if db == "" {
		db = "postgres"
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable sslrootcert='' sslcert='' sslkey='' application_name=pgha",
		quote(ep.Host), ep.Port, quote(ep.User), quote(db)))
	if err != nil {
		return nil, false, fmt.Errorf("connection settings for %s: %w", ep, err)
	}
	cfg.Password = ep.Password
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	if _, ok := ctx.Deadline(); !ok {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if ep.TLS == nil && ep.RequireTLS {
		return nil, false, &connectError{ep: ep, err: fmt.Errorf("TLS is required of %s and pgha has no TLS settings for it", ep.name())}
	}
	if ep.TLS != nil {
		cfg.TLSConfig = ep.TLS
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			return conn, true, nil
		}
		if err := plainAfter(ep, err); err != nil {
			return nil, false, err
		}
		cfg.TLSConfig = nil
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, false, &connectError{ep: ep, err: err}
	}
	return conn, false, nil
}

// plainAfter decides, after a TLS attempt failed with err, whether plain
// text may be tried: nil when it may (the server refused TLS and ep does
// not require it), else the error to return.
func plainAfter(ep Endpoint, err error) error {
	if !refusedTLS(err) {
		return &connectError{ep: ep, err: err}
	}
	if ep.RequireTLS {
		return &connectError{ep: ep, err: &DowngradeError{Node: ep.name()}}
	}
	return nil
}

// DowngradeError is a server that pgha requires TLS of (Endpoint.
// RequireTLS) answering that it speaks none.
type DowngradeError struct{ Node string }

func (e *DowngradeError) Error() string {
	return e.Node + " refused TLS although pgha has seen it serve TLS with the cluster's certificate: a server with ssl = off " +
		"or someone in between; pgha will not fall back to plain text (to turn TLS off, declare tls { enabled = false } and apply)"
}

func (e Endpoint) name() string {
	if e.Name != "" {
		return e.Name
	}
	return e.String()
}

// refusedTLS: the server answered the SSL request with "no" (ssl = off).
func refusedTLS(err error) bool {
	return err != nil && strings.Contains(err.Error(), "server refused TLS connection")
}

// connectError words a failed connection in one short line: pgconn's own
// message repeats the user, database and address around the reason.
// The original error stays reachable (errors.As finds *pgconn.PgError).
type connectError struct {
	ep  Endpoint
	err error
}

// perDialPrefix is pgconn's "address (hostname): " before each reason.
var perDialPrefix = regexp.MustCompile(`^\S+ \([^)]*\): `)

func (e *connectError) Error() string {
	msg := e.err.Error()
	var ce *pgconn.ConnectError
	if errors.As(e.err, &ce) {
		if inner := errors.Unwrap(ce); inner != nil {
			msg = perDialPrefix.ReplaceAllString(inner.Error(), "")
		}
	}
	return fmt.Sprintf("connect to %s as %s: %s", e.ep, e.ep.User, msg)
}

func (e *connectError) Unwrap() error { return e.err }

// closeConn ends a session politely (Terminate) but never waits long for a
// server that stopped answering.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// quote makes a libpq keyword/value token.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Exec runs one statement; a small helper for tests and later features.
func Exec(ctx context.Context, ep Endpoint, sql string, args ...any) error {
	conn, err := connect(ctx, ep)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", ep, err)
	}
	return nil
}

// Reload asks the server to re-read its configuration files.
func Reload(ctx context.Context, ep Endpoint) error {
	if err := Exec(ctx, ep, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("reload %s: %w", ep, err)
	}
	return nil
}

// WaitReady retries until the server accepts a query or ctx ends; the
// error then carries the last reason the server gave.
func WaitReady(ctx context.Context, ep Endpoint) error {
	var last error
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		last = Exec(ctx, ep, "SELECT 1")
		return last == nil, nil
	})
	if err != nil {
		if last != nil {
			return fmt.Errorf("wait for %s: %w (last error: %v)", ep, err, last)
		}
		return fmt.Errorf("wait for %s: %w", ep, err)
	}
	return nil
}

// WaitWritable waits until the server accepts queries and has left
// recovery: a restored backup has replayed to its moment and promoted.
func WaitWritable(ctx context.Context, ep Endpoint) error {
	var last error
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		conn, err := connect(ctx, ep)
		if err != nil {
			last = err
			return false, nil
		}
		defer closeConn(conn)
		var rec bool
		if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			last = err
			return false, nil
		}
		last = fmt.Errorf("%s is still in recovery", ep)
		return !rec, nil
	})
	if err != nil {
		return fmt.Errorf("wait for %s to take writes: %w (last: %v)", ep, err, last)
	}
	return nil
}

// WaitStreaming waits until a standby's WAL receiver is streaming. It keeps
// one connection between polls and reconnects only when that one fails
// (the standby may still be starting up).
func WaitStreaming(ctx context.Context, ep Endpoint) error {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	var last string
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		if conn == nil {
			c, err := connect(ctx, ep)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			conn = c
		}
		var status string
		err := conn.QueryRow(ctx, "SELECT COALESCE((SELECT status FROM pg_stat_wal_receiver), 'no WAL receiver')").Scan(&status)
		if err != nil {
			last = err.Error()
			closeConn(conn)
			conn = nil
			return false, nil
		}
		last = "WAL receiver: " + status
		return status == "streaming", nil
	})
	if err != nil {
		if last != "" {
			return fmt.Errorf("wait for %s to stream: %w (last seen: %s)", ep, err, last)
		}
		return fmt.Errorf("wait for %s to stream: %w", ep, err)
	}
	return nil
}

// poll calls f every 50 ms until it reports done, fails, or ctx ends.
func poll(ctx context.Context, f func(context.Context) (bool, error)) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := f(actx)
		cancel()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Setting returns a server setting as SHOW prints it.
func Setting(ctx context.Context, ep Endpoint, name string) (string, error) {
	conn, err := connect(ctx, ep)
	if err != nil {
		return "", err
	}
	defer closeConn(conn)
	var v string
	if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		return "", fmt.Errorf("%s on %s: %w", name, ep, err)
	}
	return v, nil
}
