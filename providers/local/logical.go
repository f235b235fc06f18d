package local

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// SQLSource is a server pg_dumpall or psql connects to as a superuser
// whose password is in Passfile (never on a command line).
type SQLSource struct {
	Host     string
	Port     int
	User     string
	Passfile string
	Env      []string // libpq settings (TLS)
}

func (s SQLSource) args() []string {
	return []string{"-h", s.Host, "-p", strconv.Itoa(s.Port), "-U", s.User, "--no-password"}
}

// DumpAll streams pg_dumpall (every database, roles and tablespaces) of
// the server at src to w, as RunAs.
func (r *Runtime) DumpAll(ctx context.Context, src SQLSource, w io.Writer) error {
	cmd := r.command(ctx, "pg_dumpall", src.args()...)
	cmd.Env = append(cmd.Env, "PGPASSFILE="+src.Passfile, "PGAPPNAME=pgha-backup", "PGCONNECT_TIMEOUT=10")
	cmd.Env = append(cmd.Env, src.Env...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pg_dumpall from %s:%d: %w%s", src.Host, src.Port, err, withOutput(stderr.String()))
	}
	return nil
}

// LoadSQL feeds a SQL script (a pg_dumpall, adapted by
// backup.ForFreshCluster) to psql against the server at dst, as RunAs.
// psql stops at the first error (ON_ERROR_STOP) and so does the load: a
// script that does not apply cleanly is a failed restore, not a warning.
func (r *Runtime) LoadSQL(ctx context.Context, dst SQLSource, script io.Reader) error {
	cmd := r.command(ctx, "psql", append(dst.args(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", "-")...)
	cmd.Env = append(cmd.Env, "PGPASSFILE="+dst.Passfile, "PGAPPNAME=pgha-restore", "PGCONNECT_TIMEOUT=10")
	var stderr strings.Builder
	cmd.Stdin, cmd.Stdout, cmd.Stderr = script, io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("psql into %s:%d: %w%s", dst.Host, dst.Port, err, withOutput(stderr.String()))
	}
	return nil
}
