package reconcile

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"time"

	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

// RestoreNode restores a backup's chain over the declared primary and
// starts it there, at the backup's moment, on a new timeline: the point in
// time recovery the failback-by-re-clone scripts never had. It holds the
// cluster lock, asks ask (with a summary of what happens) before touching
// anything, and loses nothing: the node's data directory is moved aside,
// not deleted. The standbys are then ahead of the restored primary on the
// old timeline; the next plan rejoins them (pg_rewind, else re-clone).
func (e *Env) RestoreNode(ctx context.Context, id, name string, ask func(summary string) (bool, error), out io.Writer) error {
	lr, ok := e.Runtime.(*localRuntime)
	if !ok {
		return fmt.Errorf("restore -node runs on the local runtime in this version; on docker, `pgha backup verify -restore` restores into a scratch container")
	}
	cn := e.Cfg.Node(name)
	if cn == nil {
		return fmt.Errorf("restore -node %s: cluster.hcl declares no such node", name)
	}
	if name != e.Cfg.Primary {
		return fmt.Errorf("restore -node %s: restore over the declared primary (%s); apply then re-clones the standbys from it", name, e.Cfg.Primary)
	}
	chain, err := e.chain(ctx, id)
	if err != nil {
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
	aside := fmt.Sprintf("%s.before-restore-%s", cn.DataDir, e.now().Format("20060102T150405Z"))
	now := "stopped"
	if n.Running {
		now = fmt.Sprintf("running (%s)", n.Role())
	}
	summary := fmt.Sprintf(`Restore %s %s (a chain of %d, taken %s) over %s, which is %s.
  %s's data directory %s is stopped and moved aside to %s: nothing is deleted.
  The chain is restored in its place and %s starts as the primary at the backup's moment, on a new
  timeline. Writes made after the backup are not in it. The standbys are ahead of it: the next
  `+"`pgha apply`"+` rejoins them (pg_rewind, else a re-clone).`,
		last.Type, last.ID, len(chain), last.Started.Format("2006-01-02 15:04 MST"), name, now, name, cn.DataDir, aside, name)
	okd, err := ask(summary)
	if err != nil {
		return err
	}
	if !okd {
		return ErrCancelled
	}
	start := time.Now()
	if n.Running {
		if err := e.Runtime.Stop(ctx, cn, "fast"); err != nil {
			return fmt.Errorf("stop %s before the restore: %w", name, err)
		}
	}
	if _, err := os.Stat(cn.DataDir); err == nil {
		if err := os.Rename(cn.DataDir, aside); err != nil {
			return fmt.Errorf("move %s aside: %w", cn.DataDir, err)
		}
		fmt.Fprintf(out, "Moved %s aside to %s.\n", cn.DataDir, aside)
	}
	recovery, err := restoreLocal(lr, e.Cfg.Backup.Repository, chain, cn.DataDir, out)
	if err != nil {
		return fmt.Errorf("%w\n(%s's previous data is in %s)", err, name, aside)
	}
	// A new timeline, whatever the layout: the standbys' history then
	// shows where they left it, and apply rejoins them.
	if len(recovery) == 0 {
		recovery = map[string]string{"restore_command": "false", "recovery_target": "immediate", "recovery_target_action": "promote"}
	}
	if err := os.WriteFile(cn.DataDir+"/recovery.signal", nil, 0o600); err != nil {
		return err
	}
	if err := lr.rt.Adopt(cn.DataDir); err != nil {
		return err
	}
	settings := plan.DesiredSettings(e.Cfg, cn, name)
	maps.Copy(settings, recovery)
	if err := lr.rt.Configure(cn.DataDir, settings, plan.HBA(e.Cfg)); err != nil {
		return err
	}
	if err := e.Runtime.Start(ctx, cn); err != nil {
		return fmt.Errorf("start %s after the restore: %w", name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	if err := postgres.WaitWritable(wctx, e.superuser(cn)); err != nil {
		return fmt.Errorf("%s after the restore: %w", name, err)
	}
	// Promoted: pgha.conf goes back to cluster.hcl's settings alone.
	if err := e.configure(ctx, cn, name); err != nil {
		return err
	}
	if err := postgres.Reload(ctx, e.superuser(cn)); err != nil {
		return err
	}
	if e.Catalog != nil {
		_ = e.Catalog.AppendHistory(ctx, redis.Event{Time: time.Now().UTC(), Kind: "restore", Message: fmt.Sprintf("restored %s over %s", last.ID, name),
			Details: map[string]string{"node": name, "backup": last.ID, "chain": fmt.Sprint(len(chain)), "previous_data": aside}})
	}
	fmt.Fprintf(out, "Restored %s over %s in %s; %s takes writes (its previous data is in %s).\nRun `pgha plan`: it shows how the standbys rejoin.\n",
		last.ID, name, time.Since(start).Round(time.Millisecond), name, aside)
	return nil
}
