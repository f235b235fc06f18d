package reconcile

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/plan"
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
