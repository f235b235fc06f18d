package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

// SyncConfirmTimeout bounds the wait of a catalog.record[synchronous]
// for the primary's commits to wait for the standbys it is to record.
// Short: the watcher checks nothing else meanwhile, and a standby that
// streams confirms within a WAL flush of the reload (milliseconds); one
// that does not is tried again at the next plan.
const SyncConfirmTimeout = 5 * time.Second

// settingsFor is plan.DesiredSettings plus, on the primary under
// replication { synchronous }, synchronous_standby_names: override when
// an action sets it (a relax, a restore), else what the catalog's record
// says (plan.PrimarySyncNames). A record that cannot be read gives the
// full list: writes that wait are safe, unprotected ones are not.
func (e *Env) settingsFor(ctx context.Context, n *config.Node, primary string, override *string) map[string]string {
	s := plan.DesiredSettings(e.Cfg, n, primary)
	if n.Name != primary {
		return s
	}
	if override != nil {
		s[plan.SyncSetting] = *override
		return s
	}
	if e.Cfg.Replication.Synchronous == nil {
		return s
	}
	var rec *state.ClusterRecord
	if e.store != nil {
		var err error
		if _, rec, _, err = e.store.Observe(ctx); err != nil {
			s[plan.SyncSetting] = plan.SyncNames(e.Cfg, primary)
			return s
		}
	}
	s[plan.SyncSetting] = plan.PrimarySyncNames(e.Cfg, primary, rec)
	return s
}

// recordSync writes the catalog's synchronous set (catalog.record
// [synchronous]) in the order state.SyncRecord explains: a set that
// names standbys is written only once the primary lists exactly them and
// its commits wait for Count of them (SyncWait); a relax or a clear is
// written at once, before the setting changes. It is fenced by the
// generation and primary the plan saw, and each change goes to the
// catalog history with its reason.
func (e *Env) recordSync(ctx context.Context, a plan.Action) error {
	if e.store == nil {
		return ErrNoCatalog
	}
	want := a.Params.Sync
	if a.Params.SyncClear {
		want = nil
	}
	if want != nil && a.Params.SyncWait && want.Confirmed() {
		if err := e.waitSynchronous(ctx, a.Params.Primary, want); err != nil {
			return err
		}
	}
	_, cur, _, err := e.store.Observe(ctx)
	if err != nil {
		return err
	}
	if cur == nil || cur.Primary != a.Params.Primary || cur.Generation != a.Params.Generation {
		now := "holds no record"
		if cur != nil {
			now = fmt.Sprintf("records %s at generation %d", cur.Primary, cur.Generation)
		}
		return &GenerationMovedError{Expected: a.Params.Generation, Stored: genOf(cur),
			err: fmt.Errorf("the synchronous set is not recorded: the plan saw %s at generation %d and the catalog %s now; plan again", a.Params.Primary, a.Params.Generation, now)}
	}
	rec := *cur
	now := e.now().UTC()
	kind := "sync.record"
	switch {
	case want == nil:
		rec.Sync, kind = nil, "sync.clear"
	default:
		w := *want
		w.Standbys = slices.Clone(want.Standbys)
		w.Since = now
		if w.Relaxed {
			kind = "sync.relax"
			if cur.Sync != nil && cur.Sync.Relaxed {
				w.Since = cur.Sync.Since
			}
		} else if cur.Sync != nil && cur.Sync.Relaxed && w.Confirmed() {
			kind = "sync.restore"
		}
		rec.Sync = &w
	}
	rec.UpdatedAt = now
	if err := e.store.PutRecordIf(ctx, rec, cur.Generation); err != nil {
		return fmt.Errorf("record the synchronous set of %s: %w", a.Params.Primary, err)
	}
	if e.Catalog != nil {
		if err := e.Catalog.AppendHistory(ctx, redis.Event{Time: now, Kind: kind, Generation: rec.Generation, Message: a.Reason, Details: a.After}); err != nil {
			e.warn("%s is recorded, but the catalog history did not take it: %v", kind, err)
		}
	}
	return nil
}

func genOf(r *state.ClusterRecord) int64 {
	if r == nil {
		return 0
	}
	return r.Generation
}

// waitSynchronous waits until primary's synchronous_standby_names lists
// want's standbys and its commits wait for Count of them
// (pg_stat_replication.sync_state "sync" or "quorum", streaming).
func (e *Env) waitSynchronous(ctx context.Context, primary string, want *state.SyncRecord) error {
	pn := e.Cfg.Node(primary)
	if pn == nil {
		return fmt.Errorf("the plan records the synchronous set of %q, which cluster.hcl does not declare", primary)
	}
	wctx, cancel := context.WithTimeout(ctx, SyncConfirmTimeout)
	defer cancel()
	expect := plan.SyncNames(e.Cfg, primary)
	seen := "nothing observed"
	for {
		n := &state.Node{Name: primary}
		e.db().Observe(wctx, e.superuser(pn), n, nil)
		if n.Reachable {
			var confirmed []string
			for _, r := range n.Replicas {
				if slices.Contains(want.Standbys, r.ApplicationName) && r.State == "streaming" && (r.SyncState == "sync" || r.SyncState == "quorum") {
					confirmed = append(confirmed, r.ApplicationName)
				}
			}
			setting := n.Settings[plan.SyncSetting].Value
			if setting == expect && len(confirmed) >= want.Count && !n.InRecovery {
				return nil
			}
			seen = fmt.Sprintf("%s = '%s', synchronous now: %s", plan.SyncSetting, setting, strings.Join(confirmed, ", "))
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("the synchronous set of %s is not recorded: %d of %s did not confirm commits within %s (%s); the next plan tries again",
				primary, want.Count, strings.Join(want.Standbys, ", "), SyncConfirmTimeout, seen)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// syncAfterRoleChange is the synchronous set a record of a new primary
// starts with: none confirmed (its standbys have yet to confirm under it),
// relaxed if it was.
func syncAfterRoleChange(cur *state.ClusterRecord) *state.SyncRecord {
	if cur == nil || cur.Sync == nil {
		return nil
	}
	return &state.SyncRecord{Mode: cur.Sync.Mode, Relaxed: cur.Sync.Relaxed, Reason: cur.Sync.Reason, Since: cur.Sync.Since}
}
