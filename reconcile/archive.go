package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/state"
)

// ErrNoArchive is Archive's answer for a cluster.hcl without `backup {
// archive {} }`.
var ErrNoArchive = errors.New("cluster.hcl declares no WAL archive; add `archive {}` to the backup block")

// archiveRetry is how long the receiver waits before it looks for the
// primary again after the stream broke.
const archiveRetry = time.Second

// Archive runs the continuous WAL archive's receiver until ctx ends (the
// watcher's goroutine, and `pgha archive`). It finds the primary, makes
// sure the archive slot exists there, and streams from where the archive
// ends; when the stream breaks (a switchover, a failover, a restart) it
// finds the primary again, a second later, and continues along the new
// primary's timeline history. stored, if set, hears every durable
// position (it must not block).
func (e *Env) Archive(ctx context.Context, log *slog.Logger, stored func(state.ArchiveStatus)) error {
	bk := e.Cfg.Backup
	if bk == nil || bk.Archive == nil {
		return ErrNoArchive
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &backup.Archiver{Store: e.Repo(), Cluster: e.Cfg.Name, Compression: bk.Compression,
		Level: bk.Level, FlushEvery: bk.Archive.Flush, Stored: stored}
	var lastErr string
	skip := false
	for {
		err := e.archiveOnce(ctx, a, log, skip)
		// WAL the primary removed never comes back: the next attempt
		// starts where the primary's WAL begins, leaving a gap that the
		// plan reports as critical, rather than archiving nothing more.
		skip = postgres.WALRemoved(err)
		if ctx.Err() != nil {
			return nil
		}
		// A failing stream is said once, not every second.
		if err != nil && err.Error() != lastErr {
			log.Warn("archive stream ended", "error", err, "retry", archiveRetry.String())
		}
		if err != nil {
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(archiveRetry):
		}
	}
}

// archiveOnce streams from the primary it finds until the stream breaks.
//
// With skip, the archive's end is no longer on the primary: it streams
// from the archive slot's restart point instead (the primary's current
// position for a new slot), and says so.
func (e *Env) archiveOnce(ctx context.Context, a *backup.Archiver, log *slog.Logger, skip bool) error {
	s := e.ObserveWith(ctx, ObserveOptions{Quick: true})
	var primary *config.Node
	for _, cn := range e.Cfg.Nodes {
		if s.Node(cn.Name).Role() == state.RolePrimary {
			if primary != nil {
				return fmt.Errorf("two nodes are writable (%s and %s): the archive follows one primary only", primary.Name, cn.Name)
			}
			primary = cn
		}
	}
	if primary == nil {
		return errors.New("no primary answers")
	}
	pn := s.Node(primary.Name)
	status, err := backup.ReadArchiveStatus(ctx, a.Store, e.Cfg.Name)
	if err != nil {
		return err
	}
	if status != nil && status.SystemID != "" && pn.SystemID != "" && status.SystemID != pn.SystemID {
		return fmt.Errorf("the archive in %s holds the WAL of database system %s, the primary %s is system %s: move %s/wal aside to archive this one",
			e.Cfg.Backup.Repository, status.SystemID, primary.Name, pn.SystemID, e.Cfg.Name)
	}
	if err := e.db().CreateSlot(ctx, e.superuser(primary), config.ArchiveSlot); err != nil {
		return err
	}
	tl, start := 0, pn.CurrentLSN
	if sl := pn.Slot(config.ArchiveSlot); sl != nil && sl.RestartLSN > 0 {
		start = sl.RestartLSN
	}
	switch {
	case skip && status != nil:
		log.Error("archive gap", "node", primary.Name, "missing_from", status.Flushed.String(), "resume", start.String(),
			"reason", "the primary removed the WAL after the archive's end before the receiver streamed it")
	case status != nil && status.Flushed > 0:
		tl, start = status.Timeline, status.Flushed
	}
	a.Node, a.SystemID = primary.Name, pn.SystemID
	log.Info("archive streaming", "node", primary.Name, "timeline", tl, "from", start.String())
	return e.db().StreamWAL(ctx, e.replicator(primary), config.ArchiveSlot, tl, start, a)
}
