package reconcile

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"time"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/backup/pitr"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// RestoreNode restores a backup's chain over the declared primary and
// starts it there, at the backup's moment, on a new timeline: the point in
// time recovery the failback-by-re-clone scripts never had. It holds the
// cluster lock, asks ask (with a summary of what happens) before touching
// anything, and loses nothing: the node's data directory is moved aside,
// not deleted. The standbys are then ahead of the restored primary on the
// old timeline; the next plan rejoins them (pg_rewind, else re-clone).
// Its lines go to r as Messages (nil: to nobody), and last the Outcome of
// "restore" (ErrCancelled when ask declined).
//
// With a target instead of an ID, the node is restored to that point in
// time from a full and the WAL archive (see Restore).
func (e *Env) RestoreNode(ctx context.Context, id string, t pitr.Target, name string, ask func(summary string) (bool, error), r Reporter) (err error) {
	r = reporter(r)
	say := messages(r)
	defer func() {
		say.Flush()
		r.Report(report.Outcome{Operation: "restore", Err: err})
	}()
	return e.restoreNode(ctx, id, t, name, ask, say)
}

func (e *Env) restoreNode(ctx context.Context, id string, t pitr.Target, name string, ask func(summary string) (bool, error), out io.Writer) error {
	nr, ok := e.Runtime.(nodeRestorer)
	if !ok {
		return fmt.Errorf("this runtime cannot restore over a node")
	}
	cn := e.Cfg.Node(name)
	if cn == nil {
		return fmt.Errorf("restore -node %s: cluster.hcl declares no such node", name)
	}
	if cn.PreventDestroy {
		return fmt.Errorf("restore -node %s: %s has prevent_destroy = true, and a restore replaces its data directory (moved aside, but no longer the node's data); remove prevent_destroy from node %q in %s first, or restore with -target-dir",
			name, name, name, e.Cfg.File)
	}
	if name != e.Cfg.Primary {
		return fmt.Errorf("restore -node %s: restore over the declared primary (%s); apply then re-clones the standbys from it", name, e.Cfg.Primary)
	}
	chain, wal, err := e.restoreChain(ctx, id, t, out)
	if err != nil {
		return err
	}
	if l, err := backup.Layout(chain); err != nil || l == backup.LayoutLogical {
		if err == nil {
			err = fmt.Errorf("restore -node %s: %s is a logical dump; it loads into a fresh cluster (pgha backup verify -restore, or psql), not over a node", name, id)
		}
		return err
	}
	if err := e.startCatalog(ctx, out); err != nil {
		return err
	}
	lock, err := e.Lock(ctx, "restore", 0, out)
	if err != nil {
		return err
	}
	defer lock.Release(context.Background())

	s := e.Observe(ctx)
	for _, other := range e.Cfg.Nodes {
		if other.Name != name && s.Node(other.Name).Role() == state.RolePrimary {
			return fmt.Errorf("restore -node %s: %s is a running primary; restoring %s would make two. Fail back first (pgha failback), or stop %s", name, other.Name, name, other.Name)
		}
	}
	n := s.Node(name)
	last := chain[len(chain)-1]
	stamp := e.now().Format("20060102T150405Z")
	aside := nr.asideDir(cn, stamp)
	now := "stopped"
	if n.Running {
		now = fmt.Sprintf("running (%s)", n.Role())
	}
	what, moment := fmt.Sprintf("%s %s (a chain of %d, taken %s)", last.Type, last.ID, len(chain), last.Started.Format("2006-01-02 15:04 MST")), "the backup's moment"
	if wal != nil {
		what = fmt.Sprintf("to %s from full %s (taken %s) and %d archived WAL segments", t, last.ID, last.Started.Format("2006-01-02 15:04 MST"), len(wal.choice.Segments))
		moment = t.String()
	}
	summary := fmt.Sprintf(`Restore %s over %s, which is %s.
  %s is stopped and its data directory moved aside to %s: nothing is deleted.
  The chain is restored in its place and %s starts as the primary at %s, on a new
  timeline. Writes made after it are not in it. The standbys are ahead of it: the next
  `+"`pgha apply`"+` rejoins them (pg_rewind, else a re-clone).`,
		what, name, now, name, aside, name, moment)
	okd, err := ask(summary)
	if err != nil {
		return err
	}
	if !okd {
		return report.ErrCancelled
	}
	start := time.Now()
	if wal != nil {
		// The timelines the nodes have been on, which the archive may not
		// hold yet (a restore over this node a moment ago): the restored
		// server must promote above all of them.
		wal.histories = map[int][]byte{}
		for _, other := range e.Cfg.Nodes {
			if !s.Node(other.Name).Reachable {
				continue
			}
			if h, err := postgres.TimelineHistories(ctx, e.replicator(other)); err == nil {
				maps.Copy(wal.histories, h)
			}
		}
	}
	if n.Running {
		if err := e.Runtime.Stop(ctx, cn, "fast"); err != nil {
			return fmt.Errorf("stop %s before the restore: %w", name, err)
		}
	}
	recovery, err := nr.restoreNode(ctx, cn, e.Repo(), chain, wal, aside, out)
	if err != nil {
		return fmt.Errorf("%w\n(%s's previous data, if it had any, is in %s)", err, name, aside)
	}
	// A new timeline, whatever the layout: the standbys' history then
	// shows where they left it, and apply rejoins them.
	if len(recovery) == 0 {
		recovery = map[string]string{"restore_command": "false", "recovery_target": "immediate", "recovery_target_action": "promote"}
	}
	settings := plan.DesiredSettings(e.Cfg, cn, name)
	maps.Copy(settings, recovery)
	if err := e.writeConfig(ctx, cn, settings); err != nil {
		return err
	}
	if err := e.Runtime.Start(ctx, cn); err != nil {
		return fmt.Errorf("start %s after the restore: %w", name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	if err := e.db().WaitWritable(wctx, e.superuser(cn)); err != nil {
		return fmt.Errorf("%s after the restore: %w", name, err)
	}
	// Promoted: pgha.conf goes back to cluster.hcl's settings alone.
	if err := e.configure(ctx, cn, name); err != nil {
		return err
	}
	if err := e.db().Reload(ctx, e.superuser(cn)); err != nil {
		return err
	}
	if e.Catalog != nil {
		_ = e.Catalog.AppendHistory(ctx, redis.Event{Time: time.Now().UTC(), Kind: "restore", Message: fmt.Sprintf("restored %s over %s", last.ID, name),
			Details: restoreDetails(name, last.ID, len(chain), aside, t)})
	}
	fmt.Fprintf(out, "Restored %s over %s in %s; %s takes writes (its previous data is in %s).\nRun `pgha plan`: it shows how the standbys rejoin.\n",
		last.ID, name, time.Since(start).Round(time.Millisecond), name, aside)
	return nil
}

// nodeRestorer is a runtime that can restore a chain into a stopped
// node's data directory after moving the old one aside.
type nodeRestorer interface {
	// asideDir is where the node's data goes before a restore.
	asideDir(n *config.Node, stamp string) string
	// restoreNode moves n's data to aside (if it has any), restores the
	// chain in its place with recovery.signal set, and returns the
	// recovery settings it starts with.
	// With wal, the archived WAL goes into pg_wal after the chain.
	restoreNode(ctx context.Context, n *config.Node, repo backup.Store, chain []state.Backup, wal *archivedWAL, aside string, out io.Writer) (map[string]string, error)
}

func (l *localRuntime) asideDir(n *config.Node, stamp string) string {
	return n.DataDir + ".before-restore-" + stamp
}

func (l *localRuntime) restoreNode(_ context.Context, n *config.Node, repo backup.Store, chain []state.Backup, wal *archivedWAL, aside string, out io.Writer) (map[string]string, error) {
	if _, err := os.Stat(n.DataDir); err == nil {
		if err := os.Rename(n.DataDir, aside); err != nil {
			return nil, fmt.Errorf("move %s aside: %w", n.DataDir, err)
		}
		fmt.Fprintf(out, "Moved %s aside to %s.\n", n.DataDir, aside)
	}
	recovery, err := restoreLocal(l, repo, chain, wal, n.DataDir, out)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.DataDir+"/recovery.signal", nil, 0o600); err != nil {
		return nil, err
	}
	if err := l.rt.Adopt(n.DataDir); err != nil {
		return nil, err
	}
	return recovery, l.mark(n)
}

// restoreDetails are the catalog history's details of a restore over a
// node; a point-in-time restore names its target.
func restoreDetails(node, id string, chain int, aside string, t pitr.Target) map[string]string {
	d := map[string]string{"node": node, "backup": id, "chain": fmt.Sprint(chain), "previous_data": aside}
	if t.Kind() != "" {
		d["target"] = t.String()
	}
	return d
}
