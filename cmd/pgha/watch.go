package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/pgha/pgha/api"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/config/clusterfile"
	"github.com/pgha/pgha/reconcile"
)

// debounce is how long the file must stay quiet after a change before it
// is read: an editor's save is several events (write, rename, chmod).
const debounce = 200 * time.Millisecond

// cmdWatch is `pgha watch`: the reconcile.Watcher loop, fed by the cluster
// file's changes (fsnotify on its directory, since editors replace files
// by rename) and SIGHUP, stopped by SIGTERM or SIGINT (main's context).
func cmdWatch(ctx context.Context, args []string, out, errw io.Writer) int {
	fs, file := newFlags("watch", errw)
	once := fs.Bool("once", false, "run one iteration and exit: 0 when converged or acted, 1 on an error (for cron and tests)")
	format := fs.String("log-format", "text", "decision log on stderr: text or json (one object per line)")
	level := fs.String("log-level", "info", "info, or debug for the time each check and each action took")
	if fs.Parse(args) != nil {
		return exitError
	}
	ho := &slog.HandlerOptions{}
	switch *level {
	case "info":
	case "debug":
		ho.Level = slog.LevelDebug
	default:
		fmt.Fprintf(errw, "Error: -log-level is info or debug, not %q\n", *level)
		return exitError
	}
	h, ok := logHandler(errw, *format, ho)
	if !ok {
		return exitError
	}
	path, err := filepath.Abs(*file)
	if err != nil {
		return fail(ctx, errw, err)
	}
	c := load(path, errw)
	if c == nil {
		return exitError
	}
	// With an api block the watcher's decisions also go to the API's
	// event stream, and its observations to the health checks.
	var hub *api.Hub
	if c.API != nil && !*once {
		hub = api.NewHub()
		h = hub.LogHandler(h)
	}
	log := slog.New(h)
	env, err := open(c)
	if err != nil {
		return fail(ctx, errw, err)
	}
	w := &reconcile.Watcher{Env: env, Log: log, WriteProbe: true}
	if *once {
		o := w.Tick(ctx)
		w.Stop()
		if o.Err != nil {
			log.Error("once", "error", o.Err.Error())
			return exitError
		}
		return exitOK
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var srv *api.Server
	var served <-chan struct{}
	if hub != nil {
		srv = api.New(c, hub, log, version)
		if served, err = srv.Serve(ctx); err != nil {
			env.Close()
			return fail(ctx, errw, err)
		}
		w.Observer = hub.Watcher()
	}
	// The continuous WAL archive, when declared, streams beside the loop.
	ar := &archiveRunner{log: log}
	if hub != nil {
		ar.stored = hub.SetArchive // the metrics' pgha_wal_archive_* series
	}
	ar.start(ctx, c)
	defer ar.stop()
	var wg sync.WaitGroup
	changed := make(chan string, 1)
	wg.Add(2)
	go func() {
		defer wg.Done()
		watchFile(ctx, path, changed, log)
	}()
	go func() {
		defer wg.Done()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				notify(changed, "SIGHUP")
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The hash of the last good file handed over, kept here: w.Env
		// belongs to the loop, which swaps it at its next iteration.
		hash := c.Hash
		for {
			select {
			case <-ctx.Done():
				return
			case why := <-changed:
				if e := reload(path, hash, why, log); e != nil {
					hash = e.Cfg.Hash
					if srv != nil {
						srv.Reload(e.Cfg)
					}
					w.Reload(e)
					ar.start(ctx, e.Cfg)
				}
			}
		}
	}()
	err = w.Run(ctx)
	cancel()
	wg.Wait()
	if served != nil {
		<-served
	}
	if err != nil {
		return fail(ctx, errw, err)
	}
	return exitOK
}

// open is reconcile.Open for the watcher: its role changes say so in the
// catalog history.
func open(c *config.Cluster) (*reconcile.Env, error) {
	e, err := reconcile.Open(c)
	if err != nil {
		return nil, err
	}
	e.Actor = "pgha watch"
	return e, nil
}

// notify passes on a change without blocking: one pending is enough,
// since the file is read when it is taken.
func notify(ch chan string, why string) {
	select {
	case ch <- why:
	default:
	}
}

// reload reads the file after a change. An invalid file keeps the last
// good configuration: its diagnostics (file:line:col) go to the log and
// nil is returned; so is an unchanged file.
func reload(path, hash, why string, log *slog.Logger) *reconcile.Env {
	r := clusterfile.Load(path)
	if r.Diags.HasErrors() || r.Cluster == nil {
		var b bytes.Buffer
		_ = r.WriteDiagnostics(&b)
		log.Error("config invalid", "file", path, "trigger", why, "diagnostic", strings.TrimSpace(b.String()))
		return nil
	}
	if r.Cluster.Hash == hash {
		log.Debug("config unchanged", "trigger", why, "hash", hash)
		return nil
	}
	e, err := open(r.Cluster)
	if err != nil {
		log.Error("config invalid", "file", path, "trigger", why, "diagnostic", err.Error())
		return nil
	}
	return e
}

// watchFile reports changes of path until ctx ends. It watches the
// parent directory, since an editor saving by rename replaces the file
// (and with it a watch on the file itself), and passes on only events
// naming the file, once they have been quiet for debounce.
func watchFile(ctx context.Context, path string, changed chan string, log *slog.Logger) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		log.Error("config watch", "error", err.Error(), "fallback", "SIGHUP re-reads the file")
		return
	}
	defer fw.Close()
	if err := fw.Add(filepath.Dir(path)); err != nil {
		log.Error("config watch", "error", err.Error(), "fallback", "SIGHUP re-reads the file")
		return
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-fw.Events:
			if !ok {
				return
			}
			if filepath.Clean(ev.Name) == path {
				timer.Reset(debounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return
			}
			log.Warn("config watch", "error", err.Error())
		case <-timer.C:
			notify(changed, "file changed")
		}
	}
}
