package plan

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/pgha/pgha/config"
)

// Situation is what Permit needs to know beyond the file and the action:
// how the cluster file relates to what the watcher last saw converged.
// The watcher keeps it; the zero value is a file the watcher started
// with (its operator endorsed it by starting the watcher on it).
type Situation struct {
	// Edited: cluster.hcl changed since the watcher last saw the cluster
	// converged on it (a plan of the file was empty).
	Edited bool
	// PrimaryEdited: the edit changed the declared primary, so that a
	// switchover carries it out; without it, a switchover towards the
	// declared primary is a failback.
	PrimaryEdited bool
}

// Permit says whether `pgha watch` may run a by itself, under the policy
// of cluster.hcl (failover and watch blocks), and why not when it may
// not: what is not permitted is logged as held and left for `pgha apply`.
// It is Permit in a Situation of no edit.
func Permit(c *config.Cluster, a Action) (bool, string) {
	return PermitIn(c, a, Situation{})
}

// PermitIn is Permit in a given Situation. The rules, in order:
//
//   - Actions that delete data (data.remove, node.destroy,
//     catalog.destroy, node.remove with delete_data) are never automatic:
//     only a person's `pgha apply` or `destroy` runs them.
//   - failover and node.fence need failover.automatic. A failover may lose
//     up to failover.maximum_lag (the planner refuses more), which is the
//     bound the operator wrote down; no further check here.
//   - standby.rejoin needs watch.rejoin = "rewind". It discards what the
//     former primary wrote after the fork (recorded in the plan's reason
//     and the catalog history): that is what rejoin = "rewind" accepts.
//     Its fallback, a re-clone, moves the old data aside and never
//     deletes it, so it is permitted with it; a plan that can only
//     re-clone (method "reclone": another cluster's data) is held, since
//     an unattended loop re-cloning would fill the disk with copies.
//   - switchover: finishing an interrupted one (Resume) is always
//     permitted, since leaving it half-way leaves no primary, and so is
//     running again one whose intent the catalog records (Intended: a
//     pgha that was permitted to began it, and was interrupted before it
//     stopped the old primary); one that
//     carries out an edit of primary needs watch.config = "apply"; any
//     other is a switch back to the declared primary after a failover and
//     needs failover.failback = "automatic".
//   - Any other action that loses data (DataLoss) is held.
//   - Healing (start a stopped node, recreate a container or its data
//     directory, re-clone a standby that lost its data, re-point a
//     standby, recreate a slot, start the managed catalog, take, expire
//     and record due backups, renew certificates, write the record) needs
//     watch.heal; after an edit of cluster.hcl with watch.config =
//     "plan", healing is held too, since it would carry out the edit.
//   - Everything else carries out an edit of cluster.hcl (settings,
//     restarts, roles, removed nodes and slots, a new primary's initdb)
//     and needs watch.config = "apply".
func PermitIn(c *config.Cluster, a Action, s Situation) (bool, string) {
	f, w := c.Failover, c.Watch
	switch a.Kind {
	case DataRemove, NodeDestroy, CatalogDestroy:
		return false, fmt.Sprintf("%s deletes data: only pgha apply (or destroy) runs it", a.Kind)
	case NodeRemove:
		if a.Params.DeleteData {
			return false, "node.remove with -delete-removed deletes data: only pgha apply runs it"
		}
	case Failover, NodeFence:
		if !f.Automatic {
			return false, "failover.automatic = false: run pgha failover"
		}
		return true, "failover.automatic = true"
	case StandbyRejoin:
		switch {
		case w.Rejoin != "rewind":
			return false, `watch.rejoin = "manual": a former primary waits for pgha apply`
		case a.Params.Method == "reclone":
			return false, "only a re-clone can rejoin it (its data is moved aside, a full copy): left for pgha apply"
		}
		return true, `watch.rejoin = "rewind"`
	case Switchover:
		switch {
		case a.Params.Resume:
			return true, "finishes an interrupted switchover: without it no node takes writes"
		case a.Params.Intended:
			return true, "finishes a switchover a pgha began (its intent is in the catalog) and that was interrupted before it stopped the old primary"
		case s.PrimaryEdited && w.Config != "apply":
			return false, `primary was edited in cluster.hcl and watch.config = "plan": run pgha apply`
		case s.PrimaryEdited:
			return true, `primary was edited in cluster.hcl and watch.config = "apply"`
		case f.Failback != "automatic":
			return false, `switching back to the declared primary is failover.failback = "manual": run pgha failback (or edit primary to keep the new one)`
		}
		return true, `failover.failback = "automatic"`
	}
	if a.DataLoss {
		return false, "it can lose data: only pgha apply runs it"
	}
	if a.Params.SyncNames != nil || (a.Kind == CatalogRecord && a.Target == "synchronous") {
		// The synchronous set and its relaxing are the file's policy
		// (replication { synchronous }), which the watcher is there to
		// keep: a relax held for a person would hold every write.
		if s.Edited && w.Config != "apply" {
			return false, `cluster.hcl changed and watch.config = "plan": run pgha apply`
		}
		return true, "replication { synchronous } is kept by the watcher"
	}
	if healing(a.Kind) {
		switch {
		case !w.Heal:
			return false, "watch.heal = false: run pgha apply"
		case s.Edited && w.Config != "apply":
			return false, `cluster.hcl changed and watch.config = "plan": run pgha apply`
		}
		return true, "watch.heal = true"
	}
	if w.Config != "apply" {
		return false, `it carries out an edit of cluster.hcl and watch.config = "plan": run pgha apply`
	}
	return true, `watch.config = "apply"`
}

// healing is the set of kinds that bring the cluster back to a state the
// file already described, rather than to a new one.
func healing(k Kind) bool {
	switch k {
	case NodeStart, NodeCreate, NodeReplace, StandbyClone, StandbyFollow, SlotCreate,
		CatalogStart, CatalogRecord, BackupTake, BackupExpire, BackupRecord, BackupDrill,
		CertificateIssue, CertificateInstall:
		return true
	}
	return false
}

// Held is an action Permit refused, with its reason.
type Held struct {
	Action Action
	Reason string
}

// Filter splits p into what the watcher may run and what it holds. An
// action that depends on a held one is held too: running it alone would
// act on a cluster its dependency has not prepared.
//
// catalog.record is the exception: it depends on every action so as to
// run last, but it must still record a failover whose rejoins are held
// (else the generation, the fencing token, would not move). It is held
// only when a role change (failover, switchover) is; otherwise it drops
// the held dependencies and lists the held rejoins among the nodes that
// must still rejoin. The permitted plan keeps p's order, facts and
// fingerprint; diagnostics are kept.
func Filter(c *config.Cluster, p *Plan, s Situation) (*Plan, []Held) {
	out := *p
	out.Actions = nil
	held := map[string]bool{}
	roleHeld := false
	var mustRejoin []string
	var hs []Held
	for _, a := range p.Actions {
		ok, why := PermitIn(c, a, s)
		if ok && a.Kind == CatalogRecord && a.Target != "synchronous" && !roleHeld {
			a = recordWithout(a, held, mustRejoin)
		} else if ok {
			for _, d := range a.DependsOn {
				if held[d] {
					ok, why = false, "it depends on "+d+", which is held"
					break
				}
			}
		}
		if !ok && (a.Kind == Failover || a.Kind == Switchover) {
			roleHeld = true
		}
		if !ok && a.Kind == StandbyRejoin {
			mustRejoin = append(mustRejoin, a.Node)
		}
		if !ok {
			held[a.ID] = true
			hs = append(hs, Held{Action: a, Reason: why})
			continue
		}
		out.Actions = append(out.Actions, a)
	}
	return &out, hs
}

// recordWithout is a catalog.record that no longer waits for the held
// actions and counts the held rejoins among the nodes that must rejoin.
func recordWithout(a Action, held map[string]bool, mustRejoin []string) Action {
	var deps []string
	for _, d := range a.DependsOn {
		if !held[d] {
			deps = append(deps, d)
		}
	}
	a.DependsOn = deps
	if len(mustRejoin) == 0 {
		return a
	}
	rejoin := append([]string(nil), a.Params.Rejoin...)
	for _, n := range mustRejoin {
		if !slices.Contains(rejoin, n) {
			rejoin = append(rejoin, n)
		}
	}
	sort.Strings(rejoin)
	a.Params.Rejoin = rejoin
	after := maps.Clone(a.After)
	if after == nil {
		after = map[string]string{}
	}
	after["rejoin"] = strings.Join(rejoin, ",")
	a.After = after
	return a
}
