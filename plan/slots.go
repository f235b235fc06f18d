package plan

import (
	"fmt"

	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/state"
)

// standbyBackupSlot plans the backup slot on a running standby when the
// cluster's incrementals store WAL (physical backups before PostgreSQL
// 17), and reports whether the standby keeps one. The slot holds the WAL
// since the newest backup on the standby as on the primary: if the
// standby becomes primary (a switchover, a failover), the next
// incremental reads that WAL there and the chain continues, instead of
// a new full after every role change.
func (b *builder) standbyBackupSlot(cn *config.Node, n *state.Node) bool {
	bk := b.c.Backup
	if bk == nil || bk.Method != "physical" || n.ServerVersion == 0 || !policy.WALSlot(n.ServerVersion) {
		return false
	}
	if sl := n.Slot(config.BackupSlot); sl != nil && n.ReplayLSN > sl.RestartLSN && n.ReplayLSN-sl.RestartLSN > backupSlotWarn {
		b.diag(Warning, cn.Name, fmt.Sprintf("slot %s holds %s of WAL on standby %s since %s", config.BackupSlot,
			bytesize.Format(int64(n.ReplayLSN-sl.RestartLSN)), cn.Name, sl.RestartLSN),
			"It keeps the WAL since the newest backup, so that the chain continues if this standby becomes primary, and moves on with every backup. "+
				"Backups are taken when apply runs: run it (from cron, say), or remove the backup block and the slots go.")
	}
	if n.Slot(config.BackupSlot) == nil {
		b.backupSlotOn(cn, b.primaryUp)
	}
	return true
}

// backupSlotOn plans the backup slot on standby cn, after action after.
func (b *builder) backupSlotOn(cn *config.Node, after string) {
	a := newAction(SlotCreate, Create, cn.Name, cn.Name+"/"+config.BackupSlot,
		fmt.Sprintf("standby %s keeps slot %s too, holding the WAL since the newest backup: if it becomes primary, the backup chain continues there", cn.Name, config.BackupSlot))
	a.After = map[string]string{"slot": config.BackupSlot, "type": "physical", "for": "backups"}
	a.Params = Params{Slot: config.BackupSlot}
	a.DependsOn = deps(after)
	b.add(a)
}

// released is an undeclared slot on the primary that a node still
// streams through: a declared standby whose slot was renamed in
// cluster.hcl, or a node removed from it.
type released struct {
	slot state.Slot
	node string
	// after is the action that releases it when that is not the node's
	// standby.follow: its removal.
	after string
}

// streamedBy names the declared standby that streams through slot sl on
// the primary although cluster.hcl gives it another slot ("" when none):
// its slot was renamed, and this plan re-points it.
func (b *builder) streamedBy(sl state.Slot) string {
	for _, cn := range b.c.Nodes {
		if cn.Name == b.target || cn.Slot == sl.Name {
			continue
		}
		n := b.node(cn.Name)
		if (n.Upstream != nil && n.Upstream.Slot == sl.Name) || n.Settings["primary_slot_name"].Value == sl.Name {
			return cn.Name
		}
	}
	return ""
}

// dropReleased drops released slots in the same plan, after their node
// let go of them: a renamed slot once its standby follows through the new
// one, a removed node's once it is stopped. A rename or a removal
// converges in one apply, and the old slot does not hold WAL back until
// the next one. A standby this plan does not re-point keeps its slot,
// with a warning.
func (b *builder) dropReleased() {
	for _, r := range b.released {
		if r.after != "" {
			a := newAction(SlotDrop, Delete, b.target, b.target+"/"+r.slot.Name,
				fmt.Sprintf("slot %s on %s was %s's, which is not in cluster.hcl; dropped once %s is stopped, since it would hold WAL back", r.slot.Name, b.target, r.node, r.node))
			a.Before = map[string]string{"slot": r.slot.Name, "restart_lsn": r.slot.RestartLSN.String(), "streamed_by": r.node}
			a.Params = Params{Slot: r.slot.Name, StreamedBy: r.node}
			a.DependsOn = deps(r.after)
			b.add(a)
			continue
		}
		follow := string(StandbyFollow) + "[" + r.node + "]"
		planned := false
		for _, a := range b.p.Actions {
			planned = planned || a.ID == follow
		}
		if !planned {
			b.diag(Warning, b.target, fmt.Sprintf("undeclared slot %s on %s is in use by %s (pid %d)", r.slot.Name, b.target, r.node, r.slot.ActivePID),
				fmt.Sprintf("cluster.hcl gives %s slot %s; the slot goes once %s streams through it.", r.node, b.c.Node(r.node).Slot, r.node))
			continue
		}
		a := newAction(SlotDrop, Delete, b.target, b.target+"/"+r.slot.Name,
			fmt.Sprintf("slot %s on %s was %s's until cluster.hcl renamed it to %s; dropped once %s streams through the new one, since it would hold WAL back", r.slot.Name, b.target, r.node, b.c.Node(r.node).Slot, r.node))
		a.Before = map[string]string{"slot": r.slot.Name, "restart_lsn": r.slot.RestartLSN.String(), "streamed_by": r.node}
		a.Params = Params{Slot: r.slot.Name, StreamedBy: r.node}
		a.DependsOn = deps(follow)
		b.add(a)
	}
}

// clonedBackupSlot plans the backup slot on a standby this plan clones
// (after started, its ID), so that a new standby holds the WAL since the
// newest backup from its first apply on. The primary's version decides
// (the clone's is the same); a new cluster's first full makes the slot.
func (b *builder) clonedBackupSlot(cn *config.Node, started string) {
	bk := b.c.Backup
	p := b.node(b.target)
	if bk == nil || bk.Method != "physical" || p.ServerVersion == 0 || !policy.WALSlot(p.ServerVersion) {
		return
	}
	b.backupSlotOn(cn, started)
}
