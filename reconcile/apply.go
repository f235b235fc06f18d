package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// StreamTimeout bounds the wait for a started standby to stream.
const StreamTimeout = 60 * time.Second

// Execute runs the actions of p in order, reporting each one's start and
// end to r (nil: to nobody), and stops at the first failure.
func (e *Env) Execute(ctx context.Context, p *plan.Plan, r Reporter) error {
	r = reporter(r)
	e.events = r
	defer func() { e.events, e.action = nil, "" }()
	// What the actions install (certificates, a clone's files) is read
	// again by the next observation, quick or not.
	defer e.forgetReused()
	done := map[string]bool{}
	var doneIDs []string
	for i, a := range p.Actions {
		// Between actions is the safe point to stop: a lost lock or a
		// cancel ends the apply here, before anything else starts. The
		// lock is read once per action, so that a force-unlock stops the
		// apply at the next action rather than at the next renewal.
		if e.held != nil && ctx.Err() == nil {
			if err := e.held.Verify(ctx); err != nil {
				return e.stopped(p, i, doneIDs, fmt.Errorf("not started: %w", ErrLockLost))
			}
		}
		if ctx.Err() != nil {
			return e.stopped(p, i, doneIDs, fmt.Errorf("not started: %w", context.Cause(ctx)))
		}
		for _, d := range a.DependsOn {
			if !done[d] {
				return e.stopped(p, i, doneIDs, fmt.Errorf("dependency %s has not run", d))
			}
		}
		r.Report(report.ActionStarted{Index: i + 1, Total: len(p.Actions), Action: a})
		e.action = a.ID
		start := time.Now()
		err := e.do(ctx, a)
		took := time.Since(start).Round(time.Millisecond)
		e.action = ""
		if err != nil {
			if cause := context.Cause(ctx); ctx.Err() != nil && cause != ctx.Err() {
				// Say why the context ended. A cause of its own (a lost
				// lock) joins the chain, as it does for an action not
				// started. A cause that is itself a cancel (os/signal's
				// Ctrl-C) stays text: an action that said what it left
				// behind ("pg_rewind of db1 interrupted: its data directory
				// stays …") is not turned into a bare cancel.
				if errors.Is(cause, context.Canceled) {
					err = fmt.Errorf("%w (%v)", err, cause)
				} else {
					err = fmt.Errorf("%w (%w)", err, cause)
				}
			}
			r.Report(report.ActionDone{Index: i + 1, Total: len(p.Actions), Action: a, Elapsed: took, Err: err})
			return e.stopped(p, i, doneIDs, err)
		}
		r.Report(report.ActionDone{Index: i + 1, Total: len(p.Actions), Action: a, Elapsed: took})
		e.remember(ctx, a)
		done[a.ID] = true
		doneIDs = append(doneIDs, a.ID)
	}
	return nil
}

// remember appends role changes to the catalog's history with the
// plan's reasons, so that every automatic choice can be read back later.
// The history is a record, not a precondition: a catalog that does not
// answer does not fail the action that already happened.
func (e *Env) remember(ctx context.Context, a plan.Action) {
	switch a.Kind {
	case plan.Failover, plan.Switchover, plan.NodeFence, plan.StandbyRejoin:
	default:
		return
	}
	if e.Catalog == nil {
		return
	}
	details := map[string]string{"node": a.Node}
	if e.Actor != "" {
		details["by"] = e.Actor
	}
	for k, v := range a.Before {
		details["before."+k] = v
	}
	for k, v := range a.After {
		details[k] = v
	}
	if err := e.Catalog.AppendHistory(ctx, redis.Event{Time: time.Now().UTC(), Kind: string(a.Kind), Message: a.Reason, Details: details}); err != nil {
		e.warn("the catalog history did not take this action (it is done all the same): %v", err)
	}
}

// indented is the writer executors print their own lines to, under the
// running action: each line is a Note of that action.
func (e *Env) indented() io.Writer {
	if e.events == nil {
		return io.Discard
	}
	return notes(e.events, e.action)
}

// note says a line under the running action: what an executor decided.
func (e *Env) note(format string, args ...any) {
	if e.events != nil {
		e.events.Report(report.Note{Action: e.action, Text: fmt.Sprintf(format, args...)})
	}
}

// warn is a note of something that went wrong beside an action that
// completed all the same; the watcher logs it (report.Note.Warn).
func (e *Env) warn(format string, args ...any) {
	if e.events != nil {
		e.events.Report(report.Note{Action: e.action, Text: fmt.Sprintf(format, args...), Warn: true})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func (e *Env) stopped(p *plan.Plan, i int, done []string, err error) error {
	var rest []string
	for _, a := range p.Actions[i+1:] {
		rest = append(rest, a.ID)
	}
	return &report.ApplyError{Done: done, Failed: p.Actions[i].ID, NotAttempted: rest, Err: err}
}

// do executes one action. Each executor is idempotent where it can be, so
// that re-running an interrupted apply converges.
func (e *Env) do(ctx context.Context, a plan.Action) error {
	c := e.Cfg
	n := c.Node(a.Node)
	primary := a.Primary
	if primary == "" {
		primary = c.Primary // plans saved before actions carried their primary
	}
	switch a.Kind {
	case plan.CatalogStart:
		if _, err := e.ensureCatalogPassword(); err != nil {
			return err
		}
		return e.Runtime.StartCatalog(ctx)
	case plan.CatalogRestart:
		return e.restartCatalog(ctx)
	case plan.CatalogDestroy:
		if e.held != nil && e.Cfg.Authority == nil {
			// The lock lives in this catalog: destroying it is the last
			// action, nothing runs after it. With an etcd authority the
			// lock is in etcd and the record's removal from there still
			// follows: releasing here stopped that removal as a lost lock
			// (destroy exited 1 at the end of every bench -chaos -authority etcd).
			if err := e.held.Release(ctx); err != nil {
				return err
			}
		}
		return e.Runtime.DestroyCatalog(ctx, a.Params.KeepVolume)
	case plan.CatalogRecord:
		if a.Target == "synchronous" {
			return e.recordSync(ctx, a)
		}
		return e.record(ctx, a)
	case plan.NodeCreate:
		return e.Runtime.CreateNode(ctx, n)
	case plan.PrimaryInit:
		if err := e.Runtime.InitDB(ctx, n); err != nil {
			return err
		}
		return e.configure(ctx, n, primary)
	case plan.NodeStart:
		if err := e.start(ctx, n, primary); err != nil {
			return err
		}
		return e.reconnected(ctx, n, primary)
	case plan.NodeStop:
		return e.Runtime.Stop(ctx, n, "fast")
	case plan.NodeRestart:
		if err := e.restart(ctx, n, primary); err != nil {
			return err
		}
		return e.reconnected(ctx, n, primary)
	case plan.NodeReplace:
		if err := e.Runtime.Replace(ctx, n); err != nil {
			return err
		}
		return e.ready(ctx, n, primary)
	case plan.NodeRemove:
		return e.remove(ctx, a)
	case plan.NodeDestroy:
		return e.Runtime.Destroy(ctx, n, a.Params.KeepVolume)
	case plan.DataRemove:
		if n.PreventDestroy {
			return fmt.Errorf("remove %s: %s has prevent_destroy = true", a.Params.Path, n.Name)
		}
		if err := e.Runtime.RemoveAside(ctx, n, a.Params.Path); err != nil {
			return err
		}
		e.note("removed %s, freeing %s", a.Params.Path, bytesize.Format(a.Params.Bytes))
		return nil
	case plan.NodeFence:
		return e.fence(ctx, n)
	case plan.RoleEnsure:
		return e.db().EnsureRole(ctx, e.superuser(n), c.Replication.User, c.Replication.Password.Reveal())
	case plan.SlotCreate:
		return e.db().CreateSlot(ctx, e.superuser(n), a.Params.Slot)
	case plan.SlotDrop:
		if who := a.Params.StreamedBy; who != "" {
			return e.dropReleased(ctx, n, a.Params.Slot, who)
		}
		return e.db().DropSlot(ctx, e.superuser(n), a.Params.Slot)
	case plan.StandbyClone:
		// pg_basebackup presents the node's certificate: install it first.
		if err := e.Runtime.Prepare(ctx, n); err != nil {
			return err
		}
		if err := e.installTLS(ctx, n); err != nil {
			return err
		}
		if err := e.Runtime.Clone(ctx, n, c.Node(primary)); err != nil {
			return err
		}
		// Marked a standby at once: if the start that follows fails, the
		// next plan starts a standby instead of suspecting a former primary.
		return e.Runtime.SetStandby(ctx, n, true)
	case plan.StandbyFollow:
		if err := e.configure(ctx, n, primary); err != nil {
			return err
		}
		if err := e.db().Reload(ctx, e.superuser(n)); err != nil {
			return err
		}
		if err := e.confirmTLS(ctx, n); err != nil {
			return err
		}
		return e.waitStreaming(ctx, n, primary)
	case plan.StandbyRejoin:
		return e.rejoin(ctx, n, c.Node(primary), a.Params.Method)
	case plan.SettingsUpdate:
		if err := e.configureWith(ctx, n, primary, a.Params.SyncNames); err != nil {
			return err
		}
		if a.Params.Restart {
			if err := e.restart(ctx, n, primary); err != nil {
				return err
			}
			return e.reconnected(ctx, n, primary)
		}
		if err := e.db().Reload(ctx, e.superuser(n)); err != nil {
			return err
		}
		return e.confirmTLS(ctx, n)
	case plan.Switchover:
		old := c.Node(a.Params.From)
		if old == nil {
			return fmt.Errorf("the plan switches over from %q, which cluster.hcl does not declare", a.Params.From)
		}
		if a.Params.Resume {
			return e.resumeSwitchover(ctx, old, n)
		}
		return e.switchover(ctx, old, n, a.Params.Generation)
	case plan.Failover:
		return e.failover(ctx, a, n)
	case plan.BackupTake:
		w := e.indented()
		_, err := e.backup(ctx, a.Params.BackupType, w, func(d report.BackupDone) { fmt.Fprintln(w, d.Summary()) })
		return err
	case plan.BackupExpire:
		return e.expire(ctx, a.Params.Backups, a.Params.WALBefore)
	case plan.BackupRecord:
		return e.recordBackup(ctx, a.Target)
	case plan.BackupDrill:
		return e.runDrill(ctx, e.indented())
	case plan.CertificateIssue:
		return e.issueAndUse(ctx, a)
	case plan.CertificateInstall:
		if err := e.installTLS(ctx, n); err != nil {
			return err
		}
		return e.Runtime.Reload(ctx, n)
	}
	return fmt.Errorf("this pgha cannot execute %s actions", a.Kind)
}

// remove stops a node cluster.hcl no longer declares and sets its data
// aside: renamed beside it (local), or its container removed and its
// volume kept (docker). Only a plan made with -delete-removed deletes it.
func (e *Env) remove(ctx context.Context, a plan.Action) error {
	n := &config.Node{Name: a.Node, Host: "127.0.0.1", Port: a.Params.Port, DataDir: a.Params.DataDir}
	deleteData := a.Params.DeleteData && a.DataLoss
	if e.Cfg.IsDocker() || deleteData {
		// Destroy stops the node and deletes its data (only a directory
		// with pgha's marker, locally) or, keeping the volume, its
		// container.
		return e.Runtime.Destroy(ctx, n, !deleteData)
	}
	if err := e.Runtime.Stop(ctx, n, "fast"); err != nil {
		return fmt.Errorf("stop %s: %w", n.Name, err)
	}
	aside := a.Params.Aside
	if aside == "" || filepath.Dir(aside) != filepath.Dir(n.DataDir) {
		return fmt.Errorf("remove %s: the plan names no place beside %s to move it to", n.Name, n.DataDir)
	}
	if _, err := os.Lstat(aside); err == nil {
		return fmt.Errorf("remove %s: %s already exists; nothing was moved", n.Name, aside)
	}
	if err := os.Rename(n.DataDir, aside); err != nil {
		return fmt.Errorf("move %s aside: %w", n.DataDir, err)
	}
	e.note("%s's data directory is now %s", n.Name, aside)
	return nil
}

// dropReleased drops a renamed slot once the standby that streamed
// through it has moved to its new one: its WAL receiver restarts on the
// reload, and the old sender goes a moment later.
func (e *Env) dropReleased(ctx context.Context, n *config.Node, slot, standby string) error {
	wctx, cancel := context.WithTimeout(ctx, StreamTimeout)
	defer cancel()
	for {
		err := e.db().DropSlot(wctx, e.superuser(n), slot)
		if err == nil {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("%w (%s still streams through it after %s)", err, standby, StreamTimeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ReconnectTimeout bounds the wait for standbys to stream again after their
// primary started or restarted (their WAL receivers retry every
// wal_retrieve_retry_interval, 5 s by default).
const ReconnectTimeout = 15 * time.Second

// reconnected waits, after the primary n came up, until the standbys that run
// stream from it again: the next plan must see the cluster this apply
// made, not one still reconnecting (a standby that does not stream is a
// critical finding). One that does not stream within ReconnectTimeout is
// noted and left to that plan. Nothing to do when n is a standby.
func (e *Env) reconnected(ctx context.Context, n *config.Node, primary string) error {
	if n.Name != primary {
		return nil
	}
	for _, sn := range e.Cfg.Nodes {
		if sn.Name == primary {
			continue
		}
		st := &state.Node{}
		octx, cancel := context.WithTimeout(ctx, ObserveTimeout)
		e.db().Observe(octx, e.superuser(sn), st, nil)
		cancel()
		if !st.Reachable || !st.InRecovery || (st.Upstream != nil && st.Upstream.Status == "streaming") {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, ReconnectTimeout)
		err := e.db().WaitStreaming(wctx, e.superuser(sn))
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			e.note("%s does not stream from %s after %s (see %s); the next plan says so", sn.Name, primary, ReconnectTimeout, e.Cfg.LogFile(sn))
		}
	}
	return nil
}

// configure writes the node's pgha.conf and pg_hba.conf from cluster.hcl,
// for primary as the cluster's primary.
func (e *Env) configure(ctx context.Context, n *config.Node, primary string) error {
	return e.configureWith(ctx, n, primary, nil)
}

// configureWith is configure with the primary's synchronous_standby_names
// set to *syncNames when not nil (see settingsFor).
func (e *Env) configureWith(ctx context.Context, n *config.Node, primary string, syncNames *string) error {
	if err := e.installTLS(ctx, n); err != nil {
		return err
	}
	if err := e.writeConfig(ctx, n, e.settingsFor(ctx, n, primary, syncNames)); err != nil {
		return fmt.Errorf("configure %s: %w", n.Name, err)
	}
	return nil
}

// writeConfig writes settings and pg_hba.conf to n. Settings that turn
// ssl off first drop the store's record that n serves TLS: from the
// reload on, n answers in plain text, and pgha must let it.
func (e *Env) writeConfig(ctx context.Context, n *config.Node, settings map[string]string) error {
	if settings["ssl"] != "on" {
		if err := e.certStore().ForgetServing(n.Name); err != nil {
			return err
		}
	}
	return e.Runtime.Configure(ctx, n, settings, plan.HBA(e.Cfg))
}

func (e *Env) start(ctx context.Context, n *config.Node, primary string) error {
	standby := n.Name != primary
	if err := e.Runtime.Prepare(ctx, n); err != nil {
		return err
	}
	e.trace("prepare " + n.Name)
	if standby {
		if err := e.Runtime.WritePassfile(ctx, n); err != nil {
			return err
		}
	}
	if cs, ok := e.Runtime.(configStarter); ok {
		if err := e.configureAndStart(ctx, cs, n, primary); err != nil {
			return err
		}
	} else {
		if err := e.configure(ctx, n, primary); err != nil {
			return err
		}
		e.trace("configure " + n.Name)
		if err := e.Runtime.SetStandby(ctx, n, standby); err != nil {
			return err
		}
		if err := e.Runtime.Start(ctx, n); err != nil {
			return err
		}
	}
	e.trace("server started " + n.Name)
	if err := e.ready(ctx, n, primary); err != nil {
		return err
	}
	e.trace("ready " + n.Name)
	return nil
}

// configStarter is a runtime that installs a node's TLS files and
// configuration, marks it a standby or not and starts it in one step:
// what start does with configure, SetStandby and Start. On Docker that
// is one exec where those took four or more, each 60-250 ms under load,
// all of them between a crashed primary and its first write again.
type configStarter interface {
	ConfigureAndStart(ctx context.Context, n *config.Node, tls *NodeTLS, settings map[string]string, hba []string, standby bool) error
}

// NodeTLS is the content of a node's TLS files.
type NodeTLS struct{ Cert, Key, CA []byte }

// configureAndStart is configure, SetStandby and Start through a
// configStarter: the same files, the same settings, the same checks.
func (e *Env) configureAndStart(ctx context.Context, cs configStarter, n *config.Node, primary string) error {
	var tls *NodeTLS
	if e.Cfg.TLS.Enabled {
		cert, key, ca, err := e.nodeTLS(n)
		if err != nil {
			return err
		}
		tls = &NodeTLS{Cert: cert, Key: key, CA: ca}
	}
	settings := e.settingsFor(ctx, n, primary, nil)
	if settings["ssl"] != "on" {
		// As writeConfig: from the start on, n answers in plain text.
		if err := e.certStore().ForgetServing(n.Name); err != nil {
			return err
		}
	}
	return cs.ConfigureAndStart(ctx, n, tls, settings, plan.HBA(e.Cfg), n.Name != primary)
}

func (e *Env) restart(ctx context.Context, n *config.Node, primary string) error {
	if err := e.Runtime.Restart(ctx, n); err != nil {
		return err
	}
	return e.ready(ctx, n, primary)
}

// ready waits until the node answers and, for a standby, streams: the next
// plan must see what this apply did, not a node still starting.
func (e *Env) ready(ctx context.Context, n *config.Node, primary string) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.db().WaitReady(wctx, e.superuser(n)); err != nil {
		return fmt.Errorf("wait for %s to accept connections: %w", n.Name, err)
	}
	if err := e.confirmTLS(ctx, n); err != nil {
		return err
	}
	if n.Name != primary {
		return e.waitStreaming(ctx, n, primary)
	}
	return nil
}

func (e *Env) waitStreaming(ctx context.Context, n *config.Node, primary string) error {
	wctx, cancel := context.WithTimeout(ctx, StreamTimeout)
	defer cancel()
	if err := e.db().WaitStreaming(wctx, e.superuser(n)); err != nil {
		return fmt.Errorf("wait for %s to stream from %s (see %s): %w", n.Name, primary, e.Cfg.LogFile(n), err)
	}
	return nil
}

// fence makes sure a node cannot take writes: its server is stopped at
// once if it runs, and it is marked as a standby so that a restart by hand
// or by a supervisor does not bring back a second primary.
func (e *Env) fence(ctx context.Context, n *config.Node) error {
	_ = e.Runtime.Stop(ctx, n, "immediate") // a dead or unreachable server is already stopped
	if err := e.Runtime.MarkFenced(ctx, n); err != nil {
		if why := e.fencedByAgent(ctx, n.Name); why != "" {
			fmt.Fprintf(e.indented(), "%s cannot be reached to mark it (%v); %s\n", n.Name, err, why)
			return nil
		}
		return fmt.Errorf("fence %s: %w", n.Name, err)
	}
	return nil
}

// fencedByAgent says why n counts as fenced when its runtime cannot
// reach it: the cluster declares agents and n's member lease is gone,
// so its agent stopped its primary before the store let the lease go
// (config.Agent). "" when that cannot be shown.
func (e *Env) fencedByAgent(ctx context.Context, node string) string {
	m := e.Members()
	if e.Cfg.Agent == nil || m == nil {
		return ""
	}
	held, err := m.Members(ctx)
	if err != nil {
		return ""
	}
	if _, ok := held[node]; ok {
		return ""
	}
	return "its member lease is gone: its agent stopped it, or its host has been cut off from the authority for longer than self_fence " + e.Cfg.Agent.SelfFence.String()
}

// switchover hands the primary role from old to target without losing a
// committed transaction: the old primary stops cleanly (its WAL senders
// ship everything), the target replays up to the old primary's shutdown
// checkpoint, and only then is it promoted. If the target does not catch
// up, the old primary is started again and nothing changed.
//
// Before it stops anything it writes its intent into the catalog record
// (intend), compare-and-set at generation planned (the plan's; 0: the
// record as it is now): a pgha that takes over after this one was killed
// finishes the switchover instead of taking the stopped primary for a
// crash, and a switchover planned before another pgha changed the
// cluster does not start.
func (e *Env) switchover(ctx context.Context, old, target *config.Node, planned int64) error {
	if err := e.intend(ctx, old, target, planned); err != nil {
		return err
	}
	if err := e.db().Checkpoint(ctx, e.superuser(old)); err != nil {
		e.dropIntent(ctx, old, target) // nothing was stopped
		return err
	}
	if err := e.Runtime.Stop(ctx, old, "fast"); err != nil {
		if ctx.Err() != nil {
			// Cancelled while it stopped: it may be down; bring it back.
			return e.rollback(ctx, old, target, fmt.Errorf("stop %s cleanly: %w", old.Name, err))
		}
		// The intent stays: if old went down after all, the next plan
		// finishes the switchover (or starts old again if it did not
		// shut down cleanly); if it runs, the next plan clears it.
		return fmt.Errorf("stop %s cleanly: %w", old.Name, err)
	}
	cd, err := e.Runtime.ControlData(ctx, old)
	if err != nil {
		return e.rollback(ctx, old, target, err)
	}
	final, err := state.ParseLSN(cd["Latest checkpoint location"])
	if err != nil {
		return e.rollback(ctx, old, target, fmt.Errorf("final LSN of %s: %w", old.Name, err))
	}
	return e.promoteAt(ctx, old, target, final)
}

// intend writes the switchover's intent (from old to target, since now)
// into the catalog record at its generation, compare-and-set, and only if
// that generation is still planned (when not 0). Any failure means the
// switchover does not start: nothing has been stopped yet. Without a
// catalog (a file lock) there is no record to write it in and no watcher
// to finish the switchover; without a record (none written yet) neither:
// the switchover runs without one, as it did before intents, and says so.
// An intent already there for the same switchover (a resumed one that
// starts again from the beginning) keeps its time.
func (e *Env) intend(ctx context.Context, old, target *config.Node, planned int64) error {
	if e.store == nil {
		return nil
	}
	reachable, cur, _, err := e.store.Observe(ctx)
	switch {
	case err != nil && !reachable:
		return fmt.Errorf("the catalog does not answer, so the switchover's intent cannot be recorded: the switchover did not start, nothing was stopped: %w", err)
	case err != nil:
		return fmt.Errorf("read the cluster record to write the switchover's intent: the switchover did not start, nothing was stopped: %w", err)
	}
	stored := int64(0)
	if cur != nil {
		stored = cur.Generation
	}
	if planned != 0 && stored != planned {
		return &GenerationMovedError{Expected: planned, Stored: stored,
			err: fmt.Errorf("the catalog is at generation %d, the plan was made at %d: another pgha changed the cluster since, so the switchover from %s to %s did not start (nothing was stopped); plan again", stored, planned, old.Name, target.Name)}
	}
	if cur == nil {
		e.note("the catalog holds no cluster record: the switchover's intent is not recorded")
		return nil
	}
	rec := *cur
	since := e.now().UTC()
	if rec.SwitchingTo == target.Name && rec.SwitchingFromNode() == old.Name && !rec.SwitchingSince.IsZero() {
		since = rec.SwitchingSince
	}
	rec.SwitchingFrom, rec.SwitchingTo, rec.SwitchingSince = old.Name, target.Name, since
	if err := e.store.PutRecordIf(ctx, rec, cur.Generation); err != nil {
		return fmt.Errorf("record the intent to switch over from %s to %s at generation %d: the switchover did not start, nothing was stopped: %w", old.Name, target.Name, cur.Generation, err)
	}
	e.note("intent recorded in the catalog (generation %d): switching over from %s to %s since %s", cur.Generation, old.Name, target.Name, since.Format(time.RFC3339))
	return nil
}

// dropIntent removes the intent of the switchover from old to target from
// the record once old is the primary again (a rollback, or a failure
// before anything stopped). Best effort: a stale intent is harmless, as
// the next plan sees old writable and records the cluster without it; an
// intent that is no longer this switchover's, or a record that moved on,
// is left alone (compare-and-set at the generation read).
func (e *Env) dropIntent(ctx context.Context, old, target *config.Node) {
	if e.store == nil {
		return
	}
	_, cur, _, err := e.store.Observe(ctx)
	if err != nil || cur == nil || cur.SwitchingTo != target.Name || cur.SwitchingFromNode() != old.Name {
		return
	}
	rec := *cur
	rec.SwitchingFrom, rec.SwitchingTo, rec.SwitchingSince = "", "", time.Time{}
	if err := e.store.PutRecordIf(ctx, rec, cur.Generation); err != nil {
		e.note("the switchover's intent stays in the catalog (the next plan clears it): %v", err)
	}
}

// promoteAt promotes target once it has replayed final, the old primary's
// shutdown checkpoint, so that no transaction the old primary committed is
// left behind; old is marked a standby first, so that nothing starts it as
// a second primary. A target that does not catch up, or an old primary
// that cannot be marked, rolls the switchover back: old starts again as
// the primary.
//
// Once target has caught up, marking and promoting run on a context the
// apply's cancel (Ctrl-C, a lost lease) does not end, as a rollback does:
// a cancel landing there would otherwise leave the cluster with no
// primary at all, old stopped and target still a standby.
func (e *Env) promoteAt(ctx context.Context, old, target *config.Node, final state.LSN) error {
	_ = e.db().ResumeReplay(ctx, e.superuser(target))
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := e.db().WaitReplayed(wctx, e.superuser(target), final)
	cancel()
	if err != nil {
		return e.rollback(ctx, old, target, fmt.Errorf("%s did not replay %s's final LSN %s: %w", target.Name, old.Name, final, err))
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), PromoteTimeout)
	defer cancel()
	if err := e.Runtime.SetStandby(pctx, old, true); err != nil {
		// Nothing was promoted: old takes writes again.
		return e.rollback(ctx, old, target, fmt.Errorf("mark %s a standby before promoting %s: %w", old.Name, target.Name, err))
	}
	if err := e.db().Promote(pctx, e.superuser(target)); err != nil {
		// Not rolled back: the promotion may still complete, and old
		// started again would make a second primary.
		return fmt.Errorf("%w; %s is stopped and marked a standby, so no node takes writes until %s is promoted (it has replayed everything %s wrote); `pgha plan` says what comes next",
			err, old.Name, target.Name, old.Name)
	}
	e.syncPromoted(pctx, target)
	return nil
}

// RollbackTimeout bounds the restart of the old primary after a switchover
// that could not complete.
const RollbackTimeout = 60 * time.Second

// PromoteTimeout bounds marking the old primary and promoting the target
// once the target caught up: the server waits up to 60 s for its
// promotion to finish, plus connecting.
const PromoteTimeout = 90 * time.Second

// resumeSwitchover finishes a switchover interrupted after the old
// primary stopped. When old shut down cleanly, its last checkpoint is the
// end of its WAL: the target is promoted once it replayed it, which is
// where the interrupted switchover was. Otherwise (it crashed, or the
// plan was wrong about it) old starts again as the primary and the
// switchover runs from the start.
func (e *Env) resumeSwitchover(ctx context.Context, old, target *config.Node) error {
	// It may still be shutting down: wait for that (a stopped one is no error).
	if err := e.Runtime.Stop(ctx, old, "fast"); err != nil {
		return fmt.Errorf("stop %s cleanly: %w", old.Name, err)
	}
	cd, err := e.Runtime.ControlData(ctx, old)
	if err != nil {
		return fmt.Errorf("read the control data of %s: %w", old.Name, err)
	}
	if cd["Database cluster state"] != "shut down" {
		e.note("%s did not shut down cleanly (%s): start it and switch over from the start", old.Name, cd["Database cluster state"])
		if err := e.start(ctx, old, old.Name); err != nil {
			return fmt.Errorf("start %s to switch over from it: %w", old.Name, err)
		}
		return e.switchover(ctx, old, target, 0)
	}
	final, err := state.ParseLSN(cd["Latest checkpoint location"])
	if err != nil {
		return fmt.Errorf("final LSN of %s: %w", old.Name, err)
	}
	e.note("%s shut down cleanly at %s: promote %s once it replayed that", old.Name, final, target.Name)
	return e.promoteAt(ctx, old, target, final)
}

// rollback restarts the old primary after a switchover to target that
// could not complete, clears the switchover's intent, and reports both.
// It runs on a context the apply's cancel (Ctrl-C, a lost lease) does not
// end: a cancelled switchover must not leave the cluster without its
// primary. When old cannot be started the intent stays, so that the next
// plan tries to finish the switchover rather than leave no primary.
func (e *Env) rollback(ctx context.Context, old, target *config.Node, cause error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RollbackTimeout)
	defer cancel()
	if err := e.start(rctx, old, old.Name); err != nil {
		return fmt.Errorf("%w; restarting %s as primary also failed: %v", cause, old.Name, err)
	}
	e.dropIntent(rctx, old, target)
	return fmt.Errorf("%w; %s was restarted as primary, nothing changed", cause, old.Name)
}

// failover promotes a standby after the primary was lost. It refuses when
// the catalog moved to another generation since the plan was made
// (another pgha acted), or when it cannot tell because the catalog does
// not answer: a promotion is the one step that cannot be taken back, and
// the catalog is what makes pgha one actor. -force promotes anyway.
func (e *Env) failover(ctx context.Context, a plan.Action, cand *config.Node) error {
	if planned := a.Params.Generation; e.store != nil && !a.Params.Force && planned != 0 {
		reachable, rec, _, err := e.store.Observe(ctx)
		switch {
		case err != nil && !reachable:
			return fmt.Errorf("the catalog does not answer, so whether the cluster is still at generation %d (the plan's) cannot be checked: nothing promoted; plan again once it answers (or -force): %w", planned, err)
		case err != nil:
			return fmt.Errorf("read the cluster record to check its generation (%d when planned): nothing promoted: %w", planned, err)
		case rec == nil:
			return &GenerationMovedError{Expected: planned,
				err: fmt.Errorf("the catalog holds no record now, the plan was made at generation %d: someone else changed the cluster; plan again (or -force)", planned)}
		case rec.Generation != planned:
			return &GenerationMovedError{Expected: planned, Stored: rec.Generation,
				err: fmt.Errorf("the catalog is at generation %d, the plan was made at %d: someone else changed the cluster; plan again (or -force)", rec.Generation, planned)}
		}
	}
	ep := e.superuser(cand)
	// Promotion replays everything the standby received before it ends
	// recovery; a paused replay is resumed so that nothing is left behind.
	_ = e.db().ResumeReplay(ctx, ep)
	if err := e.db().Promote(ctx, ep); err != nil {
		return err
	}
	e.syncPromoted(ctx, cand)
	return nil
}

// syncPromoted gives a promoted standby, under replication { synchronous
// }, its primary configuration at once: synchronous_standby_names lists
// the others, so that its commits wait for them from the start (strict),
// rather than from the next plan. Best effort: the next plan writes it
// if this fails.
func (e *Env) syncPromoted(ctx context.Context, n *config.Node) {
	if e.Cfg.Replication.Synchronous == nil {
		return
	}
	if err := e.configure(ctx, n, n.Name); err != nil {
		e.note("configure %s as primary after its promotion: %v (the next plan does)", n.Name, err)
		return
	}
	if err := e.db().Reload(ctx, e.superuser(n)); err != nil {
		e.note("reload %s after its promotion: %v (the next plan does)", n.Name, err)
	}
}

// rejoin turns a former primary (or a diverged node) into a standby of
// primary: pg_rewind when it can, a fresh clone when it cannot.
//
// It never deletes to recover. A re-clone moves the old data directory
// aside first, and happens only when pg_rewind says it can never work
// between these two data directories (see rewindCannotWork) or the plan
// asked for one. A cancelled apply, an unreachable source, a refused
// password stop the action with the data where it was: the next apply
// tries pg_rewind again. A node with prevent_destroy is never re-cloned.
func (e *Env) rejoin(ctx context.Context, n, primary *config.Node, method string) error {
	t0 := time.Now()
	step := func(what string) {
		e.note("%s: %s", what, time.Since(t0).Round(time.Millisecond))
		t0 = time.Now()
	}
	if err := e.Runtime.Stop(ctx, n, "fast"); err != nil {
		return err
	}
	step("stop " + n.Name)
	streaming := false
	var fc forkCheck
	if method != "reclone" {
		fc = e.followsWithoutRewind(ctx, n, primary)
		step("fork check of " + n.Name)
		if fc.follows {
			e.note("%s needs no pg_rewind: %s", n.Name, fc.why)
			if err := e.startFollowing(ctx, n, primary); err != nil {
				if ctx.Err() != nil {
					return err
				}
				e.note("%s did not stream without pg_rewind (%v): stopping it to rewind it", n.Name, err)
				if err := e.Runtime.Stop(ctx, n, "fast"); err != nil {
					return err
				}
			} else {
				streaming = true
				step("start and stream")
			}
		} else {
			e.note("pg_rewind of %s: %s", n.Name, fc.why)
		}
	}
	if method != "reclone" && !streaming {
		restore := e.trimSourceWAL(ctx, n, primary, fc)
		defer restore() // at the latest; after pg_rewind below
		// A just-promoted source must checkpoint first, or pg_rewind reads
		// the old timeline from its control file. With the source's
		// wal_keep_size trimmed, this checkpoint also removes the WAL
		// pg_rewind would copy for nothing.
		if err := e.db().Checkpoint(ctx, e.superuser(primary)); err != nil {
			return fmt.Errorf("checkpoint on %s before pg_rewind of %s (%s's data is untouched): %w", primary.Name, n.Name, n.Name, err)
		}
		step("checkpoint on " + primary.Name)
		// pg_rewind first runs crash recovery in single-user mode, which
		// refuses standby.signal (written when the node was fenced); the
		// start below writes it again.
		if err := e.Runtime.Prepare(ctx, n); err != nil {
			return err
		}
		marked := e.standbySignal(ctx, n)
		if err := e.Runtime.SetStandby(ctx, n, false); err != nil {
			return err
		}
		out, err := e.Runtime.Rewind(ctx, n, primary)
		if err != nil && marked {
			// A fenced node is marked a standby again, on a context the
			// cancel does not end: a failed rewind must not leave a node
			// that a restart brings back as a second primary.
			mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_ = e.Runtime.SetStandby(mctx, n, true)
			cancel()
		}
		restore()
		switch {
		case err == nil:
			step("pg_rewind")
		case ctx.Err() != nil:
			return fmt.Errorf("pg_rewind of %s interrupted (%v): its data directory stays where it was, nothing was re-cloned; run `pgha apply` again to rewind it", n.Name, context.Cause(ctx))
		default:
			why, cannot := rewindCannotWork(out + "\n" + err.Error())
			switch {
			case !cannot:
				return fmt.Errorf("pg_rewind of %s failed; its data directory stays where it was (a re-clone is only for a rewind that cannot work), fix the cause and run `pgha apply` again: %w", n.Name, err)
			case n.PreventDestroy:
				return fmt.Errorf("pg_rewind of %s cannot work (%s), and %s has prevent_destroy = true, so pgha does not replace its data by a re-clone; its data directory is untouched. Remove prevent_destroy from node %q in %s to allow a re-clone (the old data is moved aside, not deleted): %w",
					n.Name, why, n.Name, n.Name, e.Cfg.File, err)
			case method != "rewind-or-reclone":
				return fmt.Errorf("pg_rewind of %s cannot work (%s) and the plan allows no re-clone: %w", n.Name, why, err)
			}
			e.note("pg_rewind of %s cannot work (%s): re-cloning it, its data moved aside", n.Name, why)
			e.note("%s", strings.TrimSpace(out))
			method = "reclone"
		}
	}
	if method == "reclone" {
		if n.PreventDestroy {
			return fmt.Errorf("re-clone of %s refused: it has prevent_destroy = true", n.Name)
		}
		aside, err := e.Runtime.MoveAside(ctx, n, e.now().Format("20060102T150405Z"))
		if err != nil {
			return err
		}
		if aside != "" {
			e.note("moved the data of %s aside to %s (a later plan removes it once %s streams)", n.Name, aside, n.Name)
		}
		if err := e.Runtime.Clone(ctx, n, primary); err != nil {
			return err
		}
		step("re-clone")
	}
	if !streaming {
		if err := e.start(ctx, n, primary.Name); err != nil {
			return err
		}
		step("start and stream")
	}
	// The slots it kept from its time as primary would hold its WAL back.
	// A standby that still followed it may have reconnected to it (it
	// cascades now, until that standby is re-pointed): pgha does not
	// cascade, so that stale sender is ended and the slot goes anyway.
	// The backup slot stays: it holds the WAL since the newest backup, so
	// that the chain continues if this node becomes primary again.
	st := &state.Node{}
	e.db().Observe(ctx, e.superuser(n), st, nil)
	for _, sl := range st.Slots {
		if sl.Name == config.BackupSlot && e.walBackups(st.ServerVersion) {
			continue
		}
		if err := e.db().DropSlotEndingSender(ctx, e.superuser(n), sl.Name); err != nil {
			return err
		}
	}
	// A re-clone brought no backup slot: the node gets one as every
	// standby has, so that the plan after this one has nothing to add.
	if e.walBackups(st.ServerVersion) && st.Slot(config.BackupSlot) == nil {
		return e.db().CreateSlot(ctx, e.superuser(n), config.BackupSlot)
	}
	return nil
}

// followsWithoutRewind reports whether the former primary n (stopped)
// can start as a standby of primary as it is: when it wrote nothing after
// the point where primary's history left its timeline, pg_rewind has
// nothing to undo, yet it would copy all of primary's pg_wal (PostgreSQL
// 13–18) and need a checkpoint on primary first. The decision is
// pgdata.FollowsWithoutRewind's; any doubt (an unreadable fact, an
// unreachable primary) answers false, and pg_rewind runs as before.
func (e *Env) followsWithoutRewind(ctx context.Context, n, primary *config.Node) forkCheck {
	src := &state.Node{}
	e.db().Observe(ctx, e.superuser(primary), src, nil)
	if !src.Reachable || src.InRecovery || src.Timeline == 0 {
		return forkCheck{why: fmt.Sprintf("the timeline of %s is unknown (%s)", primary.Name, src.Error)}
	}
	out, err := e.Runtime.ForkFacts(ctx, n, pgdata.ForkProbes(src.History))
	if err != nil {
		return forkCheck{why: err.Error(), src: src}
	}
	ok, why := pgdata.FollowsWithoutRewind(out, src.Timeline, src.History)
	return forkCheck{follows: ok, why: why, facts: out, src: src}
}

// forkCheck is what followsWithoutRewind found.
type forkCheck struct {
	follows bool
	why     string
	facts   string      // pgdata.ForkScript's output on the former primary; "" if not run
	src     *state.Node // the source as observed; nil if unreachable
}

// trimSourceWAL lowers the source's wal_keep_size, for the checkpoint
// before pg_rewind, to what the rewound node needs: pg_rewind (PostgreSQL
// 13–18) copies every file in the source's pg_wal, and wal_keep_size
// (128MB) keeps 8 segments there that only a standby without a slot could
// use. The rewound node replays from the last checkpoint before the fork
// (pgdata.LastCommonRedo), so the source keeps the WAL from there to its
// current position, plus one segment for what it writes meanwhile. It
// trims nothing when wal_keep_size is the operator's own (cluster.hcl
// parameters), when that redo point is unknown, or when another standby
// is not streaming through its slot (a slot holds what its standby has
// yet to receive; wal_keep_size is all a disconnected one could rely on).
// The returned function writes the declared settings back and reloads;
// it runs once, whatever the rewind's outcome.
func (e *Env) trimSourceWAL(ctx context.Context, n, primary *config.Node, fc forkCheck) func() {
	noop := func() {}
	if fc.src == nil || fc.facts == "" {
		return noop
	}
	desired := e.settingsFor(ctx, primary, primary.Name, nil)
	if _, own := e.Cfg.Postgres.Parameters["wal_keep_size"]; own {
		return noop
	}
	if _, own := primary.Parameters["wal_keep_size"]; own {
		return noop
	}
	redo, ok := pgdata.LastCommonRedo(fc.facts, fc.src.Timeline, fc.src.History)
	if !ok || redo > fc.src.CurrentLSN {
		return noop
	}
	for _, o := range e.Cfg.Nodes {
		if o.Name == n.Name || o.Name == primary.Name {
			continue
		}
		if sl := fc.src.Slot(o.Slot); sl == nil || !sl.Active {
			e.note("wal_keep_size on %s kept for pg_rewind of %s: %s does not stream through its slot %q", primary.Name, n.Name, o.Name, o.Slot)
			return noop
		}
	}
	ep := e.superuser(primary)
	// The checkpoint keeps wal_keep_size's whole segments back from the
	// segment of its own redo point: one segment more than the distance
	// covers the rounding, one more what the source writes between this
	// observation and the checkpoint (up to a segment).
	segMB, err := megabytes(e.db().Setting(ctx, ep, "wal_segment_size"))
	if err != nil || segMB == 0 {
		return noop
	}
	keepMB := (int64(fc.src.CurrentLSN-redo)/(segMB<<20) + 2) * segMB
	// pgha's own value is in MB (plan.baseSettings).
	cur, err := megabytes(desired["wal_keep_size"], nil)
	if err != nil || keepMB >= cur {
		return noop
	}
	trimmed := maps.Clone(desired)
	trimmed["wal_keep_size"] = fmt.Sprintf("%dMB", keepMB)
	done := false
	restore := func() {
		if done {
			return
		}
		done = true
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := e.writeConfig(rctx, primary, desired); err != nil {
			e.note("write the settings of %s back after pg_rewind of %s: %v (the next apply does)", primary.Name, n.Name, err)
			return
		}
		if err := e.db().Reload(rctx, ep); err != nil {
			e.note("reload %s after pg_rewind of %s: %v (the next apply does)", primary.Name, n.Name, err)
		}
	}
	if err := e.writeConfig(ctx, primary, trimmed); err != nil {
		restore()
		return noop
	}
	// The checkpoint below must see the new value: a session opened after
	// the postmaster re-read the file sees it, and by then the postmaster
	// has signalled the checkpointer, which reloads before it checkpoints.
	err = e.db().Reload(ctx, ep)
	for deadline := time.Now().Add(2 * time.Second); err == nil; time.Sleep(10 * time.Millisecond) {
		v, serr := e.db().Setting(ctx, ep, "wal_keep_size")
		if serr == nil && v == trimmed["wal_keep_size"] {
			e.note("wal_keep_size on %s is %s until pg_rewind of %s ends (WAL from %s on)", primary.Name, v, n.Name, redo)
			return restore
		}
		if time.Now().After(deadline) {
			err = fmt.Errorf("wal_keep_size still %q", v)
		}
	}
	restore()
	return noop
}

// forkStreamTimeout bounds the wait for a former primary started without
// pg_rewind to stream. PostgreSQL refuses to follow a timeline that forked
// before what it replayed, so a start that does not stream in time is
// stopped and rewound instead of waiting StreamTimeout.
const forkStreamTimeout = 15 * time.Second

// startFollowing starts n as a standby of primary without pg_rewind and
// waits (forkStreamTimeout at most) until it streams.
func (e *Env) startFollowing(ctx context.Context, n, primary *config.Node) error {
	wctx, cancel := context.WithTimeout(ctx, forkStreamTimeout)
	defer cancel()
	return e.start(wctx, n, primary.Name)
}

// megabytes reads a size as PostgreSQL shows it ("16MB", "1GB").
func megabytes(v string, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "GB"):
		v, mult = strings.TrimSuffix(v, "GB"), 1024
	case strings.HasSuffix(v, "MB"):
		v = strings.TrimSuffix(v, "MB")
	default:
		return 0, fmt.Errorf("size %q is not in MB or GB", v)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n * mult, err
}

// standbySignal reports whether n's (stopped) data directory holds
// standby.signal, as the runtime observes it.
func (e *Env) standbySignal(ctx context.Context, n *config.Node) bool {
	s := &state.Cluster{Name: e.Cfg.Name, Nodes: []*state.Node{{Name: n.Name, Host: n.Host, Port: n.Port, DataDir: n.DataDir}}}
	e.Runtime.Observe(ctx, s, func(*config.Node, *state.Node) {}, ObserveOptions{})
	return s.Nodes[0].StandbySignal
}

// rewindCauses are pg_rewind's messages (PostgreSQL 13–17) for the
// situations where no retry can help: the two data directories share no
// history pg_rewind can use. Only these lead to a re-clone.
var rewindCauses = []struct{ match, why string }{
	{"source and target clusters are from different systems", "another system identifier"},
	{"could not find common ancestor", "no common timeline"},
	{"could not find previous WAL record", "WAL missing on the target"},
	{"could not find WAL", "WAL missing"},
	{"target server needs to use either data checksums or", "neither data checksums nor wal_log_hints"},
}

// rewindCannotWork classifies pg_rewind's output: whether the failure is
// one a retry cannot fix, and why in a few words. A missing WAL segment is
// "could not open file ".../pg_wal/..."" (the file varies).
func rewindCannotWork(out string) (string, bool) {
	for _, c := range rewindCauses {
		if strings.Contains(out, c.match) {
			return c.why, true
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "could not open file") && strings.Contains(line, "pg_wal/") {
			return "WAL missing", true
		}
	}
	return "", false
}

func (e *Env) record(ctx context.Context, a plan.Action) error {
	if e.store == nil {
		return ErrNoCatalog
	}
	if a.Change == plan.Delete {
		return e.store.DeleteCluster(ctx)
	}
	// The generation is decided against the record as it is now, not as
	// planned: a plan made while the catalog was down cannot know it.
	_, cur, _, err := e.store.Observe(ctx)
	if err != nil {
		return err
	}
	want := a.Params
	// A plan that saw a record acted on it: if another pgha moved the
	// generation on since (a watcher whose lease ran out mid-apply, a
	// failover by another host), this plan's role change is stale and
	// must not overwrite the newer record. A forced failover is recorded
	// anyway, as its promotion already happened.
	if planned := want.Generation; planned != 0 && !want.Force {
		stored, now := int64(0), "holds no record now"
		if cur != nil {
			stored, now = cur.Generation, fmt.Sprintf("is at generation %d now", cur.Generation)
		}
		if stored != planned {
			return &GenerationMovedError{Expected: planned, Stored: stored,
				err: fmt.Errorf("the catalog keeps its record: this plan was made at generation %d and the catalog %s, another pgha changed the cluster since; plan again", planned, now)}
		}
	}
	gen := int64(1)
	if cur != nil {
		if cur.Primary == want.Primary && slices.Equal(cur.Nodes, want.Nodes) && slices.Equal(cur.Rejoin, want.Rejoin) &&
			!(want.ClearIntent && cur.Switching()) {
			return nil
		}
		gen = cur.Generation
		if cur.Primary != want.Primary {
			gen++
		}
	}
	rec := state.ClusterRecord{Name: e.Cfg.Name, Primary: want.Primary, Nodes: slices.Clone(want.Nodes),
		Generation: gen, UpdatedAt: time.Now().UTC(), Event: want.Event, Sync: syncAfterRoleChange(cur)}
	if cur != nil {
		rec.Revision = cur.Revision // the record this write follows (compare-and-set)
	}
	if cur != nil && cur.Primary == rec.Primary {
		rec.Sync = cur.Sync   // the same primary: its synchronous set stands (catalog.record[synchronous] keeps it)
		rec.Event = cur.Event // the same primary: the event that made it stands
		if !want.ClearIntent {
			// A switchover under way (or to be finished) keeps its
			// intent; a new primary ends it.
			rec.SwitchingFrom, rec.SwitchingTo, rec.SwitchingSince = cur.SwitchingFrom, cur.SwitchingTo, cur.SwitchingSince
		}
	}
	if len(want.Rejoin) > 0 {
		rec.Rejoin = slices.Clone(want.Rejoin)
	}
	// The record says what is, not what was meant: the primary is
	// observed now, and a new primary is recorded only once it is seen
	// writable and out of recovery. Its identity makes later split-brain
	// checks possible.
	pn := e.Cfg.Node(want.Primary)
	if pn == nil {
		return fmt.Errorf("the plan records primary %q, which cluster.hcl does not declare", want.Primary)
	}
	p := &state.Node{}
	e.db().Observe(ctx, e.superuser(pn), p, nil)
	if p.Reachable {
		rec.SystemID, rec.Timeline = p.SystemID, p.Timeline
	}
	if (cur == nil || cur.Primary != rec.Primary) && p.Role() != state.RolePrimary {
		seen := "does not answer"
		if p.Reachable {
			seen = "is in recovery (a standby)"
		}
		return fmt.Errorf("the catalog keeps its record: %s %s, so it is not recorded as primary", rec.Primary, seen)
	}
	// Written only if nobody changed the record since it was read above:
	// the generation is the fencing token of role changes.
	expect := int64(0)
	if cur != nil {
		expect = cur.Generation
	}
	if err := e.store.PutRecordIf(ctx, rec, expect); err != nil {
		return fmt.Errorf("record %s as primary at generation %d: %w", rec.Primary, gen, err)
	}
	kind := want.Event
	if kind == "" {
		kind = "record"
	}
	// The record is written: a history the catalog does not take is said,
	// not made the action's failure (which would stop the apply after
	// the record it exists for).
	if err := e.Catalog.AppendHistory(ctx, redis.Event{Time: rec.UpdatedAt, Kind: kind, Generation: gen,
		Message: fmt.Sprintf("primary %s, nodes %s: %s", rec.Primary, strings.Join(want.Nodes, ","), a.Reason), Details: a.After}); err != nil {
		e.warn("%s is recorded, but the catalog history did not take it: %v", kind, err)
	}
	return nil
}
