package reconcile

import (
	"context"
	"fmt"
	"io"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/backup/pitr"
	"github.com/pgha/pgha/state"
)

// archivedWAL is what a point-in-time restore adds to its full: the
// archived segments and history files for pg_wal, and the recovery
// settings that stop at the target.
type archivedWAL struct {
	repo    backup.Store
	cluster string
	choice  pitr.Choice
	segSize uint64
	// histories are the history files of the node restored over, for
	// the timelines the archive lacks: the restored server then promotes
	// to a timeline none of the cluster's nodes has been on.
	histories map[int][]byte
}

// open is the WAL as a tar of pg_wal/ entries (read once).
func (w *archivedWAL) open() (io.ReadCloser, error) {
	return backup.ArchiveWAL(w.repo, w.cluster, w.choice, w.segSize, w.histories), nil
}

// pointInTime plans a restore to t from the backups and the WAL archive
// (see pitr.Choose) and says what it picked.
func (e *Env) pointInTime(ctx context.Context, t pitr.Target, out io.Writer) ([]state.Backup, *archivedWAL, error) {
	if e.Cfg.Backup == nil {
		return nil, nil, fmt.Errorf("cluster.hcl declares no backup block, so no repository to restore from")
	}
	list, _, err := e.Backups(ctx)
	if err != nil {
		return nil, nil, err
	}
	repo := e.Repo()
	a, err := backup.ReadArchive(repo, e.Cfg.Name, t.Name)
	if err != nil {
		return nil, nil, err
	}
	c, err := pitr.Choose(list, a, t)
	if err != nil {
		return nil, nil, fmt.Errorf("restore to %s: %w", t, err)
	}
	fmt.Fprintf(out, "Restoring to %s: full %s (ended %s at %s), then %d archived WAL segments on the way to timeline %d (the archive holds WAL to %s).\n",
		t, c.Full.ID, c.Full.Finished.UTC().Format("2006-01-02 15:04:05Z"), c.Full.StopLSN, len(c.Segments), c.Timeline, c.End)
	return []state.Backup{c.Full}, &archivedWAL{repo: repo, cluster: e.Cfg.Name, choice: c, segSize: a.SegSize}, nil
}

// recoveryFor is the recovery settings of a restored chain: the target's
// with archived WAL, else the chain's own.
func recoveryFor(chain []state.Backup, wal *archivedWAL) map[string]string {
	if wal != nil {
		return wal.choice.Settings
	}
	return backup.RecoverySettings(chain)
}

// RecoveryWindows are what a point-in-time restore can reach from the
// backups in list and the WAL archive, per timeline (none without an
// archive), for `pgha backup list`.
func (e *Env) RecoveryWindows(list []state.Backup) ([]state.RecoveryWindow, error) {
	if e.Cfg.Backup == nil {
		return nil, nil
	}
	a, err := backup.ReadArchive(e.Repo(), e.Cfg.Name, "")
	if err != nil {
		return nil, err
	}
	return pitr.Windows(list, a), nil
}
