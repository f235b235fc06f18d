package plan

import (
	"fmt"
	"strconv"
	"time"

	"github.com/pgha/pgha/state"
)

// removedAside is where a removed node's data directory goes: beside it,
// named as every set-aside directory is (local.AsidePath: a dot, so no
// later observation takes it for a node, and the stamp asides() reads),
// so that a node declared again under that name finds it among its own.
func removedAside(dir string, at time.Time) string {
	return dir + ".aside-" + at.UTC().Format("20060102T150405Z")
}

// removals plans the nodes the runtime found that cluster.hcl does not
// declare (removed from it): each is stopped, the slot it streamed
// through dropped after it, and its data moved aside; deleted only with
// -delete-removed, as an action that says it discards data. A
// writable one is not touched: pgha does not stop a primary it was told
// nothing about.
func (b *builder) removals() {
	b.removed = map[string]string{}
	for _, n := range b.s.Undeclared {
		if b.c.Node(n.Name) != nil {
			continue
		}
		if n.DataForeign != "" {
			b.diag(Warning, n.Name, fmt.Sprintf("%s is not in cluster.hcl, and pgha cannot tell it is one of this cluster's nodes", n.Name),
				n.DataForeign+". pgha leaves it alone.")
			continue
		}
		if n.Running && n.Port > 0 && !n.Reachable {
			// Asked and not answering: it may be a primary with clients.
			// (On Docker the runtime does not ask an undeclared node.)
			b.diag(Critical, n.Name, fmt.Sprintf("%s is not in cluster.hcl, runs, and does not answer", n.Name),
				"pgha stops an undeclared node only once it answers as a standby: make it answer, or stop it by hand, then plan again.")
			continue
		}
		if n.Role() == state.RolePrimary {
			b.diag(Critical, n.Name, fmt.Sprintf("%s is not in cluster.hcl but accepts writes", n.Name),
				fmt.Sprintf("pgha removes undeclared standbys, not a writable node: declare %s again (as primary, to switch over from it), or stop it by hand, then plan again.", n.Name))
			continue
		}
		what := "stopped"
		if n.Running {
			what = "running"
			if n.Role() == state.RoleStandby {
				what = "running as a standby"
			}
		}
		a := newAction(NodeRemove, Delete, n.Name, n.Name, "")
		a.Before = map[string]string{"data_dir": n.DataDir, "running": strconv.FormatBool(n.Running)}
		if n.Port > 0 {
			a.Before["port"] = strconv.Itoa(n.Port)
		}
		a.Params = Params{DataDir: n.DataDir, Port: n.Port}
		switch {
		case b.deleteRemoved:
			a.After = map[string]string{"data": "deleted"}
			a.Params.DeleteData = true
			a.DataLoss = true
			a.Reason = fmt.Sprintf("%s (%s) is not in cluster.hcl: stop it and DELETE its data (-delete-removed)", n.Name, what)
		case b.c.IsDocker():
			a.After = map[string]string{"container": "removed", "volume": "kept"}
			a.Reason = fmt.Sprintf("%s (%s) is not in cluster.hcl: stop it and remove its container; its data stays on its volume", n.Name, what)
		default:
			aside := removedAside(n.DataDir, b.s.ObservedAt)
			a.After = map[string]string{"aside": aside}
			a.Params.Aside = aside
			a.Reason = fmt.Sprintf("%s (%s) is not in cluster.hcl: stop it and move its data directory aside to %s; nothing is deleted", n.Name, what, aside)
		}
		b.removed[n.Name] = b.add(a)
	}
}

// removedStream names the node this plan removes that streams through
// slot sl on the primary ("" when none): the slot is dropped after it.
// The node says so (its WAL receiver's slot), or the primary does: the
// slot's WAL sender is the one whose application_name is the node's.
func (b *builder) removedStream(sl state.Slot) string {
	p := b.node(b.target)
	for _, n := range b.s.Undeclared {
		if b.removed[n.Name] == "" {
			continue
		}
		if (n.Upstream != nil && n.Upstream.Slot == sl.Name) || n.Settings["primary_slot_name"].Value == sl.Name {
			return n.Name
		}
		if r := p.Replica(n.Name); r != nil && sl.Active && r.PID != 0 && r.PID == sl.ActivePID {
			return n.Name
		}
	}
	return ""
}
