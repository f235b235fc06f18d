package reconcile

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/state"
)

// Backup takes a backup now (`pgha backup`). Only full physical backups
// exist in this version. The backup does not take the cluster lock: a
// long backup must never hold up a failover.
func (e *Env) Backup(ctx context.Context, kind string, out io.Writer) (state.Backup, error) {
	bk := e.Cfg.Backup
	if bk == nil {
		return state.Backup{}, fmt.Errorf("cluster.hcl declares no backup block; add `backup {}` for the defaults")
	}
	if kind != "full" {
		return state.Backup{}, fmt.Errorf("%s backups are not implemented yet; take a full one (-type full)", kind)
	}
	if bk.Method != "physical" {
		return state.Backup{}, fmt.Errorf("method %q is not implemented yet", bk.Method)
	}
	s := e.Observe(ctx)
	src := e.backupSource(s)
	if src == nil {
		return state.Backup{}, fmt.Errorf("no node to back up: the primary does not answer%s", map[bool]string{true: " and no standby streams", false: ""}[bk.Source == "standby"])
	}
	n := s.Node(src.Name)
	start := time.Now()
	fmt.Fprintf(out, "Backing up %s (%s) into %s...\n", src.Name, n.Role(), bk.Repository)
	b, err := backup.Full(ctx, backup.Options{Repository: bk.Repository, Cluster: e.Cfg.Name, Node: src.Name,
		Compression: bk.Compression, Level: bk.Level, ServerVersion: n.ServerVersion, SystemID: n.SystemID},
		streamer{e: e, n: src})
	if err != nil {
		return b, err
	}
	took := time.Since(start)
	fmt.Fprintf(out, "Backup %s complete: %s read, %s stored (%.0f%%) in %s, %s/s.\n", b.ID, plan.Bytes(b.DatabaseBytes), plan.Bytes(b.StoredBytes),
		100*float64(b.StoredBytes)/float64(max(b.DatabaseBytes, 1)), took.Round(time.Millisecond), plan.Bytes(int64(float64(b.DatabaseBytes)/max(took.Seconds(), 0.001))))
	if e.Catalog != nil {
		if err := e.Catalog.PutBackup(ctx, b); err != nil {
			// The repository holds the manifest: nothing is lost.
			fmt.Fprintf(out, "Warning: the backup is complete in the repository, but the catalog could not record it (%v).\n", err)
		}
	}
	return b, nil
}

// backupSource is the primary, or a streaming standby when the backup
// block asks for one.
func (e *Env) backupSource(s *state.Cluster) *config.Node {
	var primary, standby *config.Node
	for _, cn := range e.Cfg.Nodes {
		n := s.Node(cn.Name)
		switch {
		case n.Role() == state.RolePrimary:
			primary = cn
		case n.Role() == state.RoleStandby && n.Upstream != nil && n.Upstream.Status == "streaming" && standby == nil:
			standby = cn
		}
	}
	if e.Cfg.Backup.Source == "standby" && standby != nil {
		return standby
	}
	return primary
}

// Backups lists the backups from the catalog, or from the repository's
// manifests when the catalog does not answer; it says which.
func (e *Env) Backups(ctx context.Context) ([]state.Backup, string, error) {
	if e.Catalog != nil {
		if list, err := e.Catalog.Backups(ctx); err == nil {
			return list, "catalog", nil
		}
	}
	if e.Cfg.Backup == nil {
		return nil, "", fmt.Errorf("cluster.hcl declares no backup block")
	}
	list, err := backup.Repository(e.Cfg.Backup.Repository, e.Cfg.Name)
	return list, "repository", err
}

type streamer struct {
	e *Env
	n *config.Node
}

func (s streamer) BaseBackup(ctx context.Context, w io.Writer) (string, error) {
	return s.e.Runtime.BaseBackup(ctx, s.n, w)
}

// VerifyBackup checks a backup against its manifest (the stored file's
// checksum, then the whole compressed tar stream) and, with restore,
// restores it into a scratch instance, starts it and runs a query.
func (e *Env) VerifyBackup(ctx context.Context, id string, restore bool, out io.Writer) error {
	b, err := e.findBackup(ctx, id)
	if err != nil {
		return err
	}
	repo := e.Cfg.Backup.Repository
	rc, err := backup.Open(repo, *b)
	if err != nil {
		return fmt.Errorf("verify %s: %w", id, err)
	}
	defer rc.Close()
	fmt.Fprintf(out, "%s: checksum matches the manifest (%s)\n", id, b.Checksum)
	if !restore {
		if err := backup.Check(rc); err != nil {
			return fmt.Errorf("verify %s: %w", id, err)
		}
		fmt.Fprintf(out, "%s: the archive reads back completely\n", id)
		return nil
	}
	lr, ok := e.Runtime.(*localRuntime)
	if !ok {
		return fmt.Errorf("verify -restore runs on the local runtime only in this version")
	}
	// The scratch instance lives beside the nodes, where the PostgreSQL
	// user can reach it; the repository stays private to pgha.
	scratch, err := os.MkdirTemp(e.Cfg.Runtime.DataDir, ".verify-"+id+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	if err := os.Chmod(scratch, 0o755); err != nil {
		return err
	}
	data := filepath.Join(scratch, "data")
	if err := backup.Extract(rc, data); err != nil {
		return fmt.Errorf("restore %s: %w", id, err)
	}
	_ = os.Remove(filepath.Join(data, "standby.signal"))
	if err := lr.rt.Adopt(scratch); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	settings := map[string]string{"port": fmt.Sprint(port), "listen_addresses": "127.0.0.1", "unix_socket_directories": "",
		"primary_conninfo": "", "primary_slot_name": "", "archive_mode": "off"}
	if err := lr.rt.Configure(data, settings, plan.HBA(e.Cfg)); err != nil {
		return err
	}
	logFile := filepath.Join(scratch, "verify.log")
	if err := lr.rt.Start(ctx, data, logFile); err != nil {
		return fmt.Errorf("restore %s: the restored data directory does not start: %w", id, err)
	}
	defer lr.rt.Stop(context.Background(), data, "immediate")
	ep := postgres.Endpoint{Host: "127.0.0.1", Port: port, User: e.Cfg.Postgres.Superuser, Password: e.Cfg.Postgres.Password.Reveal()}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := postgres.WaitReady(wctx, ep); err != nil {
		return fmt.Errorf("restore %s: %w", id, err)
	}
	n := &state.Node{}
	postgres.Observe(ctx, ep, n, nil)
	if !n.Reachable || n.SystemID != b.SystemID {
		return fmt.Errorf("restore %s: the restored instance answers with system id %q, the backup says %q (%s)", id, n.SystemID, b.SystemID, n.Error)
	}
	fmt.Fprintf(out, "%s: restored into a scratch instance, started, and answered (system id %s, %s of databases)\n", id, n.SystemID, plan.Bytes(n.DatabaseBytes))
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Restore writes a backup into dir, a new directory, ready to start as a
// PostgreSQL data directory owned by the runtime's user. It refuses an
// existing non-empty directory: a restore never overwrites data.
func (e *Env) Restore(ctx context.Context, id, dir string, out io.Writer) error {
	b, err := e.findBackup(ctx, id)
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("restore into %s: the directory is not empty; pgha does not overwrite data", dir)
	}
	lr, ok := e.Runtime.(*localRuntime)
	if !ok {
		return fmt.Errorf("restore runs on the local runtime only in this version")
	}
	rc, err := backup.Open(e.Cfg.Backup.Repository, *b)
	if err != nil {
		return fmt.Errorf("restore %s: %w", id, err)
	}
	defer rc.Close()
	start := time.Now()
	if err := backup.Extract(rc, dir); err != nil {
		return fmt.Errorf("restore %s: %w", id, err)
	}
	_ = os.Remove(filepath.Join(dir, "standby.signal"))
	if err := lr.rt.Adopt(dir); err != nil {
		return err
	}
	fmt.Fprintf(out, "Restored %s (%s) into %s in %s. Its pgha.conf still carries %s's settings: set port before starting it.\n",
		id, plan.Bytes(b.DatabaseBytes), dir, time.Since(start).Round(time.Millisecond), b.Node)
	return nil
}

// findBackup looks a backup up by ID, in the catalog or the repository.
func (e *Env) findBackup(ctx context.Context, id string) (*state.Backup, error) {
	list, _, err := e.Backups(ctx)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].ID == id {
			return &list[i], nil
		}
	}
	return nil, fmt.Errorf("no backup %s; `pgha backup list` shows them", id)
}
