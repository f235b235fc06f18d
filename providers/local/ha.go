package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pgha/pgha/internal/pgconf"
	"github.com/pgha/pgha/internal/pgdata"
	"golang.org/x/sys/unix"
)

// ControlData runs pg_controldata on a stopped or running data directory
// and returns its fields ("Latest checkpoint location", ...).
func (r *Runtime) ControlData(ctx context.Context, dir string) (map[string]string, error) {
	out, err := output(r.command(ctx, "pg_controldata", "-D", dir))
	if err != nil {
		return nil, fmt.Errorf("pg_controldata %s: %w%s", dir, err, withOutput(out))
	}
	return pgdata.ParseControlData(out), nil
}

// RewindSource is the running server a stopped data directory is rewound
// to, connected to as a superuser through a passfile.
type RewindSource struct {
	Host     string
	Port     int
	User     string
	Passfile string
	Env      []string // libpq settings (TLS)
}

// Rewind runs pg_rewind on the stopped data directory dir so that it can
// follow src again; it returns pg_rewind's report (which says where the
// timelines diverged). The data directory must belong to the same cluster.
func (r *Runtime) Rewind(ctx context.Context, dir string, src RewindSource) (string, error) {
	if err := clearDeadPidfile(dir); err != nil {
		return "", err
	}
	conn := pgconf.Conninfo(pgconf.KV{Key: "host", Value: src.Host}, pgconf.KV{Key: "port", Value: strconv.Itoa(src.Port)},
		pgconf.KV{Key: "user", Value: src.User}, pgconf.KV{Key: "dbname", Value: "postgres"}, pgconf.KV{Key: "connect_timeout", Value: "10"})
	// --no-sync, then syncFilesystems: pg_rewind's own final sync is an
	// fsync of every file of the data directory (PostgreSQL 12 to 16 know
	// no other way; 17 has --sync-method=syncfs), most of which it did not
	// touch. One syncfs per filesystem writes the same dirty pages and
	// skips the walk. pg_rewind writes the control file before that final
	// sync either way, so the order of what reaches the disk is the same;
	// the server is started only after syncFilesystems returned.
	cmd := r.command(ctx, "pg_rewind", "--no-sync", "--target-pgdata", dir, "--source-server", conn)
	cmd.Env = append(cmd.Env, "PGPASSFILE="+src.Passfile)
	cmd.Env = append(cmd.Env, src.Env...)
	out, err := output(cmd)
	if err != nil {
		return out, fmt.Errorf("pg_rewind %s from %s:%d: %w%s", dir, src.Host, src.Port, err, withOutput(out))
	}
	if err := syncFilesystems(dir); err != nil {
		return out, fmt.Errorf("pg_rewind %s: %w", dir, err)
	}
	return out, nil
}

// syncFilesystems makes what was written under the data directory dir
// durable with syncfs(2), once for each filesystem that holds dir, its
// pg_wal and its tablespaces (either may be a symlink to another one), as
// PostgreSQL's own syncfs method does (recovery_init_sync_method, and
// --sync-method=syncfs of the PostgreSQL 17 tools). Linux reports a
// writeback error through syncfs since 5.8.
func syncFilesystems(dir string) error {
	paths := []string{dir, filepath.Join(dir, "pg_wal")}
	if ts, err := os.ReadDir(filepath.Join(dir, "pg_tblspc")); err == nil {
		for _, t := range ts {
			paths = append(paths, filepath.Join(dir, "pg_tblspc", t.Name()))
		}
	}
	done := map[uint64]bool{}
	for _, p := range paths {
		f, err := os.Open(p) // follows a symlink to the filesystem it names
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && p != dir {
				continue
			}
			return fmt.Errorf("sync %s: %w", p, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(int(f.Fd()), &st)
		if err == nil && !done[st.Dev] {
			err = unix.Syncfs(int(f.Fd()))
			done[st.Dev] = err == nil
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("syncfs %s: %w", p, err)
		}
	}
	return nil
}

// clearDeadPidfile removes a postmaster.pid whose process is dead or a
// zombie. PostgreSQL removes a stale pid file itself when the pid is gone,
// but a crashed postmaster that its parent has not reaped yet still
// answers kill(pid, 0), and pg_rewind's crash recovery then refuses to
// start. A zombie runs nothing, so the file is stale.
func clearDeadPidfile(dir string) error {
	path := filepath.Join(dir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	pm, err := pgdata.ParsePostmaster(string(b))
	if err != nil || pm.PID == 0 || alive(pm.PID) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	return nil
}

// BaseBackup streams a tar-format base backup of src (with the WAL needed
// to make it consistent) to w, and returns pg_basebackup's verbose report,
// which names the start and end WAL positions.
func (r *Runtime) BaseBackup(ctx context.Context, src CloneSource, w io.Writer) (string, error) {
	args := []string{"-D", "-", "-F", "tar", "-X", "fetch", "-c", "fast", "--no-password", "-v",
		"-h", src.Host, "-p", strconv.Itoa(src.Port), "-U", src.User}
	cmd := r.command(ctx, "pg_basebackup", args...)
	cmd.Env = append(cmd.Env, "PGCONNECT_TIMEOUT=10", "PGPASSFILE="+src.Passfile, "PGAPPNAME=pgha-backup")
	cmd.Env = append(cmd.Env, src.Env...)
	var report strings.Builder
	cmd.Stderr = &report
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("pg_basebackup: %w", err)
	}
	// Large reads keep the compressor fed in big blocks.
	_, cerr := io.CopyBuffer(w, stdout, make([]byte, 1<<20))
	err = cmd.Wait()
	if err == nil {
		err = cerr
	}
	if err != nil {
		return report.String(), fmt.Errorf("pg_basebackup from %s:%d: %w%s", src.Host, src.Port, err, withOutput(report.String()))
	}
	return report.String(), nil
}

// Adopt gives a directory tree written by pgha (an extracted backup) to
// RunAs, with the 0700 mode PostgreSQL insists on for a data directory.
func (r *Runtime) Adopt(dir string) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return r.chown(path)
	})
}

// CombineBackup runs pg_combinebackup (PostgreSQL 17) over parts, full
// first, into out, as RunAs: a block-level incremental chain becomes one
// data directory.
func (r *Runtime) CombineBackup(ctx context.Context, parts []string, out string) error {
	for _, p := range parts {
		if err := r.Adopt(p); err != nil {
			return err
		}
	}
	args := append(append([]string{}, parts...), "-o", out)
	cmd := r.command(ctx, "pg_combinebackup", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_combinebackup: %w%s", err, withOutput(string(b)))
	}
	return nil
}

// VerifyBackup runs pg_verifybackup on a restored base backup directory
// that holds the server's backup_manifest: every file's size and checksum
// against the manifest. The WAL is replayed on start, so it is not parsed.
func (r *Runtime) VerifyBackup(ctx context.Context, dir string) (string, error) {
	cmd := r.command(ctx, "pg_verifybackup", "-n", "-q", dir)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return string(b), fmt.Errorf("pg_verifybackup %s: %w%s", dir, err, withOutput(string(b)))
	}
	return string(b), nil
}

// ForkFacts runs pgdata.ForkScript on the stopped data directory dir with
// probes (pgdata.ForkProbes) and returns its output.
func (r *Runtime) ForkFacts(ctx context.Context, dir string, probes []string) (string, error) {
	out, err := output(r.command(ctx, "/bin/sh", append([]string{"-c", pgdata.ForkScript, "sh", dir}, probes...)...))
	if err != nil {
		return out, fmt.Errorf("inspect the WAL of %s: %w%s", dir, err, withOutput(out))
	}
	return out, nil
}
