package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/pgha/pgha/internal/pgconf"
)

// CloneSource says where a standby is cloned from and as whom.
type CloneSource struct {
	Host     string
	Port     int
	User     string // a role with REPLICATION
	Slot     string // physical slot to stream WAL through; "" = none
	Passfile string // libpq passfile holding User's password (see WritePassfile)
	AppName  string // application_name, shown in the primary's pg_stat_replication
	// Env adds libpq settings (PGSSLMODE and the certificate files).
	Env []string
}

// Clone copies a running server into dir with pg_basebackup, streaming the
// WAL it needs (-X stream) through the node's slot so that the primary keeps
// that WAL meanwhile. dir must be missing or empty: Clone never overwrites
// data. A failed clone removes what it wrote, so that the next apply starts
// over. No -R: pgha writes primary_conninfo itself, through Configure.
// The password comes from the passfile, never a command line or environment.
func (r *Runtime) Clone(ctx context.Context, dir string, src CloneSource) error {
	dir, err := absPath("clone", dir)
	if err != nil {
		return err
	}
	if src.Host == "" || src.Port <= 0 || src.User == "" {
		return fmt.Errorf("clone into %s: source needs a host, a port and a user (got %s:%d as %q)", dir, src.Host, src.Port, src.User)
	}
	_, statErr := os.Stat(dir)
	existed := statErr == nil
	if existed {
		empty, err := isEmpty(dir)
		if err != nil {
			return fmt.Errorf("clone into %s: %w", dir, err)
		}
		if !empty {
			return fmt.Errorf("clone into %s: the directory is not empty; pgha never overwrites data (move its files away, or remove the node's data with destroy)", dir)
		}
	} else if !errors.Is(statErr, os.ErrNotExist) {
		return fmt.Errorf("clone into %s: %w", dir, statErr)
	}
	if err := r.CreateDataDir(dir); err != nil {
		return fmt.Errorf("clone: %w", err)
	}
	args := []string{"-D", dir, "-h", src.Host, "-p", strconv.Itoa(src.Port), "-U", src.User,
		"-X", "stream", "-c", "fast", "--no-password"}
	if src.Slot != "" {
		args = append(args, "-S", src.Slot)
	}
	cmd := r.command(ctx, "pg_basebackup", args...)
	cmd.Env = append(cmd.Env, "PGCONNECT_TIMEOUT=10") // an unreachable primary fails the clone instead of hanging it
	cmd.Env = append(cmd.Env, src.Env...)
	if src.Passfile != "" {
		pf, err := absPath("clone: passfile", src.Passfile)
		if err != nil {
			return err
		}
		cmd.Env = append(cmd.Env, "PGPASSFILE="+pf)
	}
	if src.AppName != "" {
		cmd.Env = append(cmd.Env, "PGAPPNAME="+src.AppName)
	}
	out, err := output(cmd)
	if err != nil {
		cleanup := removeContents(dir)
		if !existed && cleanup == nil {
			cleanup = os.Remove(dir)
		}
		msg := fmt.Sprintf("clone %s from %s:%d as %s: %v%s", dir, src.Host, src.Port, src.User, err, withOutput(out))
		if cleanup != nil {
			msg += fmt.Sprintf("\nremoving the partial copy failed too: %v", cleanup)
		}
		return errors.New(msg)
	}
	return nil
}

// removeContents empties dir, keeping dir itself.
func removeContents(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// PassEntry is one line of a libpq passfile; empty fields match anything.
type PassEntry = pgconf.PassEntry

// WritePassfile writes a libpq passfile (hostname:port:database:username:password,
// with ':' and '\' escaped) that standbys and pg_basebackup read, so that
// replication passwords never appear in PostgreSQL's configuration, in ps
// or in pg_stat_wal_receiver. The file is 0600 and owned by RunAs (libpq
// ignores a passfile others can read); its directory is 0700, owned by
// RunAs. A shared, world-writable directory is refused.
func (r *Runtime) WritePassfile(path string, entries []PassEntry) error {
	path, err := absPath("passfile", path)
	if err != nil {
		return err
	}
	content, err := pgconf.Passfile(entries)
	if err != nil {
		return fmt.Errorf("passfile %s: %w", path, err)
	}
	parent := filepath.Dir(path)
	if fi, err := os.Stat(parent); err == nil && fi.Mode()&(os.ModeSticky|0o002) != 0 {
		return fmt.Errorf("passfile %s: %s is shared (mode %v); put the passfile in a private directory", path, parent, fi.Mode())
	}
	if err := r.ensurePrivateDir(parent); err != nil {
		return fmt.Errorf("passfile %s: %w", path, err)
	}
	if err := r.writeFileAtomic(path, content, 0o600); err != nil {
		return fmt.Errorf("passfile %s: %w", path, err)
	}
	return nil
}

// WritePrivateFiles writes each file 0600, owned by RunAs, creating its
// directory 0700 (TLS keys and certificates a server and libpq read).
func (r *Runtime) WritePrivateFiles(files map[string][]byte) error {
	for path, content := range files {
		path, err := absPath("file", path)
		if err != nil {
			return err
		}
		if err := r.ensurePrivateDir(filepath.Dir(path)); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := r.writeFileAtomic(path, content, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}
