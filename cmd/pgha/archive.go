package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/reconcile"
	"github.com/pgha/pgha/state"
)

// cmdArchive is `pgha archive`: the continuous WAL archive's receiver
// alone, for a cluster without `pgha watch` (which runs it itself), until
// SIGTERM or SIGINT.
func cmdArchive(ctx context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("archive", errw)
	format := fs.String("log-format", "text", "log on stderr: text or json (one object per line)")
	verbose := fs.Bool("v", false, "log every durable position (once per flush)")
	if fs.Parse(args) != nil {
		return exitError
	}
	h, ok := logHandler(errw, *format, nil)
	if !ok {
		return exitError
	}
	log := slog.New(h)
	c := load(*file, errw)
	if c == nil {
		return exitError
	}
	env, err := reconcile.Open(c)
	if err != nil {
		return fail(ctx, errw, err)
	}
	defer env.Close()
	var stored func(state.ArchiveStatus)
	if *verbose {
		stored = func(s state.ArchiveStatus) { logStored(log, s) }
	}
	if err := env.Archive(ctx, log, stored); err != nil {
		return fail(ctx, errw, err)
	}
	return exitOK
}

func logStored(log *slog.Logger, s state.ArchiveStatus) {
	log.Info("archive stored", "node", s.Node, "timeline", s.Timeline, "lsn", s.Flushed.String())
}

// archiveRunner runs the archive receiver beside `pgha watch`, in one
// goroutine that stop ends and waits for. A reload of cluster.hcl starts
// it anew with the new file (or stops it when the archive block went).
type archiveRunner struct {
	log    *slog.Logger
	stored func(state.ArchiveStatus) // hears each durable position (nil: nobody)
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs the receiver for c, after stopping the one running.
func (r *archiveRunner) start(ctx context.Context, c *config.Cluster) {
	r.stop()
	if c.Backup == nil || c.Backup.Archive == nil {
		return
	}
	env, err := reconcile.Open(c)
	if err != nil {
		r.log.Error("archive not started", "error", err.Error())
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	r.mu.Lock()
	r.cancel, r.done = cancel, done
	r.mu.Unlock()
	go func() {
		defer close(done)
		defer env.Close()
		r.log.Info("archive started", "repository", c.Backup.Repository, "flush", c.Backup.Archive.Flush.String())
		if err := env.Archive(ctx, r.log, r.stored); err != nil && !errors.Is(err, context.Canceled) {
			r.log.Error("archive stopped", "error", err.Error())
		}
	}()
}

// stop ends the receiver and waits until its goroutine returned.
func (r *archiveRunner) stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel, r.done = nil, nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}
