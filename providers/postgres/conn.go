// Package postgres observes and changes one PostgreSQL server through pgx:
// what it is (primary or standby, timeline, LSNs, slots, settings, roles) and
// the few SQL-level actions pgha needs (roles, slots, reload, waits).
package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Endpoint says how to reach a server as a given user.
type Endpoint struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string // "" = postgres
}

func (e Endpoint) String() string { return fmt.Sprintf("%s:%d", e.Host, e.Port) }

// connect opens one connection. The password is set on the parsed config,
// never written into a connection string, so no error can carry it.
// The simple protocol lets a batch go out in a single round trip.
func connect(ctx context.Context, ep Endpoint) (*pgx.Conn, error) {
	db := ep.Database
	if db == "" {
		db = "postgres"
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable application_name=pgha",
		quote(ep.Host), ep.Port, quote(ep.User), quote(db)))
	if err != nil {
		return nil, fmt.Errorf("connection settings for %s: %w", ep, err)
	}
	cfg.Password = ep.Password
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	if _, ok := ctx.Deadline(); !ok {
		cfg.ConnectTimeout = 5 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", ep, err)
	}
	return conn, nil
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
	defer conn.Close(context.Background())
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

// WaitReady retries until the server accepts a query or ctx ends.
func WaitReady(ctx context.Context, ep Endpoint) error {
	return poll(ctx, func(ctx context.Context) (bool, error) {
		return Exec(ctx, ep, "SELECT 1") == nil, nil
	})
}

// WaitStreaming waits until a standby's WAL receiver is streaming.
func WaitStreaming(ctx context.Context, ep Endpoint) error {
	var last string
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		conn, err := connect(ctx, ep)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		defer conn.Close(context.Background())
		var status string
		err = conn.QueryRow(ctx, "SELECT COALESCE((SELECT status FROM pg_stat_wal_receiver), 'no WAL receiver')").Scan(&status)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = "WAL receiver: " + status
		return status == "streaming", nil
	})
	if err != nil && last != "" {
		return fmt.Errorf("%w (last seen: %s)", err, last)
	}
	return err
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
