package docker

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/pgha/pgha/internal/pgconf"
)

// CloneSource says where a standby is cloned from, or a base backup
// taken, and as whom: the fields of local.CloneSource, with paths inside
// the node's container.
type CloneSource struct {
	Host     string
	Port     int
	User     string // a role with REPLICATION
	Slot     string // physical slot to stream WAL through; "" = none
	Passfile string // libpq passfile in the container holding User's password (WritePassfile)
	AppName  string // application_name, shown in the source's pg_stat_replication
	Env      []string
}

func (s CloneSource) env(appName string) []string {
	if s.AppName != "" {
		appName = s.AppName
	}
	env := []string{"PGPASSFILE=" + s.Passfile, "PGAPPNAME=" + appName, "PGCONNECT_TIMEOUT=10"}
	return append(env, s.Env...)
}

// Clone copies a running server into the node's empty data directory
// with pg_basebackup run inside its container (-X stream through the
// node's slot). A non-empty directory is refused: pgha never overwrites
// data. A failed clone removes what it wrote, so that the next apply
// starts over; a cancel ends pg_basebackup in the container too.
func (r *Runtime) Clone(ctx context.Context, n Node, src CloneSource) error {
	if err := r.CreateNode(ctx, n); err != nil {
		return err
	}
	if _, err := r.eng.Exec(ctx, n.Name, User, nil, nil, "sh", "-c", `[ -z "$(ls -A "$0")" ]`, PGData); err != nil {
		return fmt.Errorf("clone into %s: its data directory is not empty; pgha does not overwrite data", n.Name)
	}
	args := []string{"-D", PGData, "-h", src.Host, "-p", strconv.Itoa(src.Port), "-U", src.User,
		"-X", "stream", "-c", "fast", "--no-password"}
	if src.Slot != "" {
		args = append(args, "-S", src.Slot)
	}
	if _, err := r.pgCancellable(ctx, n.Name, src.env(n.Name), "pg_basebackup", args...); err != nil {
		_, _ = r.eng.Exec(context.Background(), n.Name, User, nil, nil, "find", PGData, "-mindepth", "1", "-delete")
		return err
	}
	return nil
}

// BaseBackup runs pg_basebackup inside the node's container against src
// (the node itself) and streams the tar to w through the exec stream:
// nothing is staged in the container, and the image needs nothing beyond
// PostgreSQL's own client programs. It returns pg_basebackup's verbose
// report (the start and end WAL positions).
func (r *Runtime) BaseBackup(ctx context.Context, n Node, src CloneSource, w io.Writer) (string, error) {
	path, err := r.bin(ctx, n.Name, "pg_basebackup")
	if err != nil {
		return "", err
	}
	report, err := r.eng.ExecStream(ctx, n.Name, User, src.env("pgha-backup"), w, path, "-D", "-", "-F", "tar", "-X", "fetch", "-c", "fast",
		"--no-password", "-v", "-h", src.Host, "-p", strconv.Itoa(src.Port), "-U", src.User)
	if err != nil {
		return report, fmt.Errorf("pg_basebackup on %s: %w", n.Name, err)
	}
	return report, nil
}

// SQLSource is a server pg_dumpall (or pg_rewind) connects to as a
// superuser. Unlike local.SQLSource it carries the password itself: the
// runtime writes it to a passfile in the container for the one command
// and removes it after.
type SQLSource struct {
	Host     string
	Port     int
	User     string
	Password string
	Env      []string // libpq settings (TLS)
}

// passfile writes src's credentials to a private file in the node's
// volume and returns its path and its remover.
func (r *Runtime) passfile(ctx context.Context, node, path string, src SQLSource) (func(), error) {
	content, err := pgconf.Passfile([]pgconf.PassEntry{{User: src.User, Password: src.Password}})
	if err != nil {
		return nil, err
	}
	return r.secret(ctx, node, path, content)
}

// DumpAll runs the image's pg_dumpall inside the node's container against
// src and streams the script to w through the exec stream.
func (r *Runtime) DumpAll(ctx context.Context, n Node, src SQLSource, w io.Writer) error {
	pf := "/var/lib/postgresql/.pgha-pgpass-superuser"
	done, err := r.passfile(ctx, n.Name, pf, src)
	if err != nil {
		return err
	}
	defer done()
	path, err := r.bin(ctx, n.Name, "pg_dumpall")
	if err != nil {
		return err
	}
	env := append([]string{"PGPASSFILE=" + pf, "PGAPPNAME=pgha-backup", "PGCONNECT_TIMEOUT=10"}, src.Env...)
	if stderr, err := r.eng.ExecStream(ctx, n.Name, User, env, w, path, "-h", src.Host, "-p", strconv.Itoa(src.Port), "-U", src.User, "--no-password"); err != nil {
		return fmt.Errorf("pg_dumpall on %s: %w\n%s", n.Name, err, stderr)
	}
	return nil
}
