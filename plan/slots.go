package plan

import (
	"fmt"

	"github.com/pgha/pgha/backup"
	"github.com/pgha/pgha/config"
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
	if bk == nil || bk.Method != "physical" || n.ServerVersion == 0 || !backup.WALSlot(n.ServerVersion) {
		return false
	}
	if n.Slot(config.BackupSlot) == nil {
		a := newAction(SlotCreate, Create, cn.Name, cn.Name+"/"+config.BackupSlot,
			fmt.Sprintf("standby %s keeps slot %s too, holding the WAL since the newest backup: if it becomes primary, the backup chain continues there", cn.Name, config.BackupSlot))
		a.After = map[string]string{"slot": config.BackupSlot, "type": "physical", "for": "backups"}
		a.DependsOn = deps(b.primaryUp)
		b.add(a)
	}
	return true
}
