// Package plan computes, purely, the ordered actions that turn an observed
// cluster (state) into the declared one (config), and renders them.
//
// Nothing here touches the network or the disk: Build is a function of its
// two inputs, which is what makes plans reviewable, testable with golden
// files, and safe to run as a dry-run audit.
package plan

import (
	"encoding/json"
	"fmt"

	"github.com/pgha/pgha/state"
)

// Change is what an action does to its target, shown with Terraform's symbols.
type Change string

const (
	Create  Change = "create"
	Update  Change = "update"
	Delete  Change = "delete"
	Replace Change = "replace"
)

// Symbol is the one-column mark a Terraform user reads at once.
func (c Change) Symbol() string {
	switch c {
	case Create:
		return "+"
	case Update:
		return "~"
	case Delete:
		return "-"
	case Replace:
		return "-/+"
	}
	return "?"
}

// Kind is the closed set of things apply knows how to do.
type Kind string

const (
	CatalogStart   Kind = "catalog.start"   // start the managed Redis
	CatalogRestart Kind = "catalog.restart" // rewrite the managed Redis's configuration (a password) and restart it
	NodeCreate     Kind = "node.create"     // create an empty data directory
	PrimaryInit    Kind = "primary.init"    // initdb with data checksums + pgha's configuration
	NodeStart      Kind = "node.start"      // write configuration, start, wait until ready (standbys: streaming)
	NodeStop       Kind = "node.stop"       // clean (fast) shutdown
	NodeRestart    Kind = "node.restart"    // restart for settings that need one
	NodeReplace    Kind = "node.replace"    // recreate a node's container (image, network), keeping its data
	NodeDestroy    Kind = "node.destroy"    // stop and delete the data directory
	DataRemove     Kind = "data.remove"     // delete a data directory set aside by a re-clone or restore, once the node is healthy and it is old enough
	NodeRemove     Kind = "node.remove"     // a node cluster.hcl no longer declares: stop it, move its data aside
	RoleEnsure     Kind = "role.ensure"     // replication role with LOGIN REPLICATION and the declared password
	SlotCreate     Kind = "slot.create"     // physical slot on the primary
	SlotDrop       Kind = "slot.drop"       // drop an undeclared slot that holds WAL back
	StandbyClone   Kind = "standby.clone"   // pg_basebackup through the node's slot
	StandbyFollow  Kind = "standby.follow"  // re-point primary_conninfo / primary_slot_name, reload
	StandbyRejoin  Kind = "standby.rejoin"  // former primary → standby: pg_rewind, else re-clone
	Switchover     Kind = "switchover"      // lossless role change: clean stop, catch up, promote
	Failover       Kind = "failover"        // promote a standby after the primary was lost
	NodeFence      Kind = "node.fence"      // stop a primary that must not take writes, mark it standby
	SettingsUpdate Kind = "settings.update" // write pgha.conf and reload (restart when required)
	CatalogRecord  Kind = "catalog.record"  // write the cluster record (nodes, primary, generation)
	CatalogDestroy Kind = "catalog.destroy" // stop the managed Redis and remove its files
	BackupTake     Kind = "backup.take"     // take the backup the schedule says is due
	BackupExpire   Kind = "backup.expire"   // delete a chain retention lets go, keep its manifests as tombstones
	BackupRecord   Kind = "backup.record"   // copy a backup's manifest into the catalog that missed it
	BackupDrill    Kind = "backup.drill"    // restore the newest chain and the WAL archive into a scratch instance, amcheck it

	CertificateIssue   Kind = "certificate.issue"   // create the cluster CA, or issue (renew) a certificate in the store
	CertificateInstall Kind = "certificate.install" // copy a node's certificate, key and the CA to it, reload
)

// Kinds lists every action kind, in documentation order.
var Kinds = []Kind{CatalogStart, CatalogRestart, NodeCreate, PrimaryInit, NodeStart, NodeStop, NodeRestart, NodeReplace, NodeDestroy, DataRemove, NodeRemove,
	RoleEnsure, SlotCreate, SlotDrop, StandbyClone, StandbyFollow, StandbyRejoin, Switchover, Failover, NodeFence, SettingsUpdate, CatalogRecord, CatalogDestroy, BackupTake, BackupExpire, BackupRecord,
	BackupDrill, CertificateIssue, CertificateInstall}

// Action is one step of a plan. It is data: apply looks at Kind and the
// attributes, nothing else.
type Action struct {
	// ID is unique in a plan: kind[target], e.g. node.start[db2].
	ID     string `json:"id"`
	Kind   Kind   `json:"kind"`
	Change Change `json:"change"`
	// Node is the node acted upon (the primary for role and slot actions);
	// empty for catalog actions.
	Node string `json:"node,omitempty"`
	// Target names the object: a node, a slot, a role, "redis".
	Target string `json:"target"`
	// Primary is the primary the action works towards: what a standby
	// follows, where slots and roles live.
	Primary string `json:"primary,omitempty"`
	// Reason is a sentence a person can check against reality.
	Reason string `json:"reason"`
	// Before and After are for people: what the plan shows, in words.
	// Apply never reads them; it reads Params.
	Before map[string]string `json:"before,omitempty"`
	After  map[string]string `json:"after,omitempty"`
	// Params are the action's inputs for apply, typed.
	Params Params `json:"params,omitzero"`
	// DataLoss marks actions that discard data; they need explicit approval.
	DataLoss  bool     `json:"data_loss"`
	DependsOn []string `json:"depends_on,omitempty"`
}

// Params are what an executor needs beyond the action's kind, node,
// target and primary. They used to be read back from Before and After,
// which are display text: a reworded label or a changed unit would have
// changed what apply does. Each field names the kinds that fill it; the
// others leave it empty, and an empty Params is not written.
type Params struct {
	// KeepVolume (node.destroy, catalog.destroy on Docker): remove the
	// container, keep its volume and the data on it.
	KeepVolume bool `json:"keep_volume,omitempty"`
	// Path and Bytes (data.remove): the set-aside directory to delete and
	// its size when the plan was made.
	Path  string `json:"path,omitempty"`
	Bytes int64  `json:"bytes,omitempty"`
	// Slot (slot.create, slot.drop): the physical slot's name.
	Slot string `json:"slot,omitempty"`
	// StreamedBy (slot.drop): the node that streamed through the slot;
	// the slot is dropped once that node let go of it.
	StreamedBy string `json:"streamed_by,omitempty"`
	// Method (standby.rejoin): "rewind", "reclone" or "rewind-or-reclone".
	Method string `json:"method,omitempty"`
	// Restart (settings.update): a changed setting needs a restart; else
	// a reload applies them.
	Restart bool `json:"restart,omitempty"`
	// From (switchover): the primary being switched away from. Resume: it
	// was already stopped by an interrupted switchover, which is finished.
	From   string `json:"from,omitempty"`
	Resume bool   `json:"resume,omitempty"`
	// Intended (switchover): the catalog records this switchover's
	// intent (from From to the target) while From still takes writes: a
	// pgha began it and was interrupted before it stopped From.
	Intended bool `json:"intended,omitempty"`
	// BackupType (backup.take): "full", "incremental" or "differential".
	BackupType string `json:"backup_type,omitempty"`
	// Backups (backup.expire): the IDs of the chain's backups to delete.
	Backups []string `json:"backups,omitempty"`
	// WALBefore (backup.expire): the continuous archive's segments that
	// end at or before this LSN go too; the executor deletes no segment a
	// full still kept in the repository needs, whatever the plan said.
	WALBefore string `json:"wal_before,omitempty"`
	// DataDir and Port (node.remove): where the undeclared node runs.
	// DeleteData: delete its data (-delete-removed) instead of setting it
	// aside; Aside: the directory beside DataDir it is moved to (local).
	DataDir    string `json:"data_dir,omitempty"`
	Port       int    `json:"port,omitempty"`
	DeleteData bool   `json:"delete_data,omitempty"`
	Aside      string `json:"aside,omitempty"`
	// Generation (failover, switchover, catalog.record): the catalog's
	// generation when the plan was made, 0 when it held no record (or did
	// not answer). The fencing token of role changes: a failover does not
	// promote, a switchover does not write its intent (and so stops
	// nothing), and a record is not written, once another pgha moved it
	// on. Force
	// (failover, and its catalog.record): promote and record even so.
	Generation int64 `json:"generation,omitempty"`
	Force      bool  `json:"force,omitempty"`
	// Primary, Nodes, Rejoin and Event (catalog.record): the record to
	// write: its primary, declared nodes, nodes that must rejoin, and the
	// event ("record", "switchover", "failover") that produced it.
	Primary string   `json:"primary,omitempty"`
	Nodes   []string `json:"nodes,omitempty"`
	Rejoin  []string `json:"rejoin,omitempty"`
	Event   string   `json:"event,omitempty"`
	// ClearIntent (catalog.record): the record is written without its
	// switchover intent: the primary changes (the switchover, or a
	// failover, is over), or the intent is stale (no switchover is under
	// way any more). Otherwise the intent is kept, since the switchover
	// it names may still have to be finished.
	ClearIntent bool `json:"clear_intent,omitempty"`
	// SyncNames (settings.update[synchronous_standby_names]): the value
	// the primary's synchronous_standby_names is set to ("" relaxes it).
	SyncNames *string `json:"sync_names,omitempty"`
	// Sync, SyncClear and SyncWait (catalog.record[synchronous]): the
	// synchronous set to record (SyncClear: none, the field goes), only
	// once the primary's commits wait for Count of its standbys when
	// SyncWait. Generation and Primary fence it like any record.
	Sync      *state.SyncRecord `json:"sync,omitempty"`
	SyncClear bool              `json:"sync_clear,omitempty"`
	SyncWait  bool              `json:"sync_wait,omitempty"`
}

// IsZero tells encoding/json's omitzero to leave out params that would be
// written as {}: an action that needs none carries none, and a decoded
// plan re-encodes to the same bytes. It asks the encoder itself, so a
// field added later cannot be forgotten here.
func (p Params) IsZero() bool {
	b, err := json.Marshal(p)
	return err == nil && string(b) == "{}"
}

func newAction(kind Kind, change Change, node, target, reason string) Action {
	return Action{ID: fmt.Sprintf("%s[%s]", kind, target), Kind: kind, Change: change, Node: node, Target: target, Reason: reason}
}

// Severity of a plan diagnostic.
type Severity string

const (
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// Diagnostic is something the plan cannot fix by itself, or that the
// operator must know before approving.
type Diagnostic struct {
	Severity Severity `json:"severity"`
	Node     string   `json:"node,omitempty"`
	Summary  string   `json:"summary"`
	Detail   string   `json:"detail,omitempty"`
}

// FormatVersion is the version of the JSON plan format. Additive changes
// keep the major number; anything else bumps it. 1.1 added params, which
// apply reads: a saved plan older than MinSavedVersion has none and is
// refused.
const FormatVersion = "1.1"

// MinSavedVersion is the oldest minor version of 1.x that apply executes.
const MinSavedVersion = 1

// Plan is the ordered list of actions for one cluster.
type Plan struct {
	FormatVersion string `json:"format_version"`
	Cluster       string `json:"cluster"`
	// Operation is what produced the plan: "apply" or "destroy".
	Operation string `json:"operation"`
	// ConfigHash is the cluster file's hash; Fingerprint the hash of Facts.
	ConfigHash  string `json:"config_hash"`
	Fingerprint string `json:"fingerprint"`
	// Facts are the observed facts the plan depends on, so that a saved plan
	// can say exactly what moved since it was made.
	Facts       map[string]string `json:"facts"`
	Actions     []Action          `json:"actions"`
	Diagnostics []Diagnostic      `json:"diagnostics"`
	// Archive is the continuous WAL archive's position and lag; nil
	// without an archive.
	Archive *ArchiveView `json:"archive,omitempty"`
}

// Summary counts actions the way Terraform does: a replace is one add and
// one destroy.
type Summary struct {
	Add     int `json:"add"`
	Change  int `json:"change"`
	Destroy int `json:"destroy"`
}

// Summary counts the plan's actions.
func (p *Plan) Summary() Summary {
	var s Summary
	for _, a := range p.Actions {
		switch a.Change {
		case Create:
			s.Add++
		case Update:
			s.Change++
		case Delete:
			s.Destroy++
		case Replace:
			s.Add++
			s.Destroy++
		}
	}
	return s
}

// Empty reports whether the plan has nothing to do.
func (p *Plan) Empty() bool { return len(p.Actions) == 0 }

// DataLoss reports whether any action discards data.
func (p *Plan) DataLoss() bool {
	for _, a := range p.Actions {
		if a.DataLoss {
			return true
		}
	}
	return false
}

// Critical reports whether a diagnostic is critical.
func (p *Plan) Critical() bool {
	for _, d := range p.Diagnostics {
		if d.Severity == Critical {
			return true
		}
	}
	return false
}
