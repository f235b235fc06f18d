// Package state holds plain data describing what pgha observed of a cluster.
//
// A snapshot is a set of facts, never an error: an unreachable node or catalog
// is recorded (Reachable=false, Error set) so that the planner can reason about
// it. The types here import nothing of pgha's so every layer can share them.
package state

import (
	"fmt"
	"time"
)

// LSN is a PostgreSQL write-ahead log position.
type LSN uint64

// String formats the LSN the way PostgreSQL does (X/X).
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint32(l)) }

// ParseLSN reads PostgreSQL's X/X notation.
func ParseLSN(s string) (LSN, error) {
	var hi, lo uint32
	if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", s, err)
	}
	return LSN(uint64(hi)<<32 | uint64(lo)), nil
}

// Role is what a node is, as PostgreSQL reports it.
type Role string

const (
	RolePrimary Role = "primary"
	RoleStandby Role = "standby"
	RoleUnknown Role = "unknown"
)

// Cluster is one observation of every declared node and the catalog.
type Cluster struct {
	Name       string    `json:"name"`
	ObservedAt time.Time `json:"observed_at"`
	// Nodes in the order the cluster file declares them.
	Nodes []*Node `json:"nodes"`
	// Undeclared are nodes the runtime found that the cluster file does
	// not declare (removed from it, or never in it): PostgreSQL data
	// directories under the local data_dir, containers labelled with the
	// cluster's name on Docker. Plans remove them; status lists them.
	Undeclared []*Node `json:"undeclared,omitempty"`
	Catalog    Catalog `json:"catalog"`
	// Authority is the etcd cluster holding the lock, the leases and the
	// record when the file declares authority "etcd" (nil otherwise: the
	// catalog holds them). Catalog's Record, Lock and Leader are then
	// etcd's, so that the planner reads them in one place.
	Authority *Authority `json:"authority,omitempty"`
	// Network is the Docker network; nil on the local runtime.
	Network *Network `json:"network,omitempty"`
	// RuntimeError says why the runtime as a whole could not be observed
	// (a Docker engine that does not answer, or refuses pgha's
	// certificate): nothing is known then of any node's container or
	// volume, which is not the same as their absence.
	RuntimeError string `json:"runtime_error,omitempty"`
	// Backups are what the backup repository's manifests say, newest
	// first: the truth about which backups exist, whatever the catalog
	// recorded. Nil without a backup block.
	Backups []Backup `json:"backups,omitempty"`
	// BackupsError says why the repository could not be read.
	BackupsError string `json:"backups_error,omitempty"`
	// Archive is what the repository holds of the continuous WAL
	// archive; nil without one.
	Archive *Archive `json:"archive,omitempty"`
	// TLS is what the certificate store holds; nil when TLS is off.
	TLS *TLS `json:"tls,omitempty"`
}

// TLS is the cluster's certificate store: its CA and the certificates
// issued for nodes, pgha and the managed Redis (by name).
type TLS struct {
	Dir string `json:"dir"`
	// CA is nil when the store has no ca.crt.
	CA *Cert `json:"ca,omitempty"`
	// CAKey: the store holds ca.key, so pgha can issue certificates.
	CAKey bool             `json:"ca_key"`
	Certs map[string]*Cert `json:"certs,omitempty"`
	Error string           `json:"error,omitempty"`
}

// Cert is one certificate of the store.
type Cert struct {
	Fingerprint string    `json:"fingerprint"` // SHA-256 of the DER, hex
	NotAfter    time.Time `json:"not_after"`
	// Hosts are its SAN DNS names and IP addresses.
	Hosts []string `json:"hosts,omitempty"`
	// Verified: it chains to the store's CA and its key matches.
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
}

// Network is the cluster's Docker network.
type Network struct {
	Name   string `json:"name"`
	Exists bool   `json:"exists"`
}

// Container is a node's Docker container, found by pgha's labels.
type Container struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
	Image   string `json:"image"`
}

// Node returns the observed node with the given name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Node is what the runtime and PostgreSQL say about one declared node.
type Node struct {
	Name string `json:"name"`
	Host string `json:"host"`
	Port int    `json:"port"`

	// Runtime facts.
	DataDir       string `json:"data_dir"`
	DirExists     bool   `json:"dir_exists"`     // the data directory exists
	Initialized   bool   `json:"initialized"`    // PG_VERSION present
	StandbySignal bool   `json:"standby_signal"` // standby.signal present
	Running       bool   `json:"running"`        // postmaster alive
	PID           int    `json:"pid,omitempty"`
	// PMStatus is postmaster.pid's status line while Running
	// ("starting", "ready", "standby", "stopping": pgdata.PMStarting and
	// the others); "" when not read. A starting server takes no
	// connection, whatever pg_control says.
	PMStatus     string `json:"pm_status,omitempty"`
	RuntimeError string `json:"runtime_error,omitempty"`
	// Container is set on the docker runtime when the node's container exists.
	Container *Container `json:"container,omitempty"`
	// Aside lists data directories pgha moved aside instead of deleting
	// them (a re-clone, a restore over the node): what a later plan may
	// remove once the node is healthy again.
	Aside []AsideDir `json:"aside,omitempty"`
	// DataForeign says why pgha will not delete the data directory (it
	// carries no pgha marker for this cluster); "" when it is pgha's or
	// missing. Local runtime: Docker volumes are pgha's by their labels.
	DataForeign string `json:"data_foreign,omitempty"`

	// PostgreSQL facts; zero when not Reachable.
	Reachable     bool               `json:"reachable"`
	Error         string             `json:"error,omitempty"`
	ServerVersion int                `json:"server_version,omitempty"` // server_version_num, e.g. 150018
	InRecovery    bool               `json:"in_recovery"`
	SystemID      string             `json:"system_id,omitempty"`
	Timeline      int                `json:"timeline,omitempty"`
	CurrentLSN    LSN                `json:"current_lsn,omitempty"` // primary: pg_current_wal_lsn
	ReceiveLSN    LSN                `json:"receive_lsn,omitempty"` // standby: pg_last_wal_receive_lsn
	ReplayLSN     LSN                `json:"replay_lsn,omitempty"`  // standby: pg_last_wal_replay_lsn
	ReplayAge     time.Duration      `json:"replay_age,omitempty"`  // standby: now() - pg_last_xact_replay_timestamp()
	Upstream      *Upstream          `json:"upstream,omitempty"`
	Slots         []Slot             `json:"slots,omitempty"`
	Replicas      []Replica          `json:"replicas,omitempty"`
	Settings      map[string]Setting `json:"settings,omitempty"`
	// History is where the node's timeline forked from each ancestor.
	History []TimelineSwitch `json:"history,omitempty"`
	// DatabaseBytes is the size of all databases: what a re-clone copies.
	DatabaseBytes int64 `json:"database_bytes,omitempty"`
	// HBAPlainTCP counts pg_hba.conf lines that accept TCP without TLS.
	HBAPlainTCP int `json:"hba_plain_tcp,omitempty"`
	// TLSCert and TLSCA are the fingerprints of the certificate and CA
	// installed where the node's server reads them; "" when absent.
	// Runtime facts: read from the files, whether or not it runs.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSCA   string `json:"tls_ca,omitempty"`
	// TLSFilesError says the installed files could not be read (a
	// Docker exec that timed out under load): TLSCert "" then means
	// unknown, not absent, and no install is planned on it.
	TLSFilesError string `json:"tls_files_error,omitempty"`
	// TLSSession: pgha's observing session was TLS, verified against
	// the cluster CA and the node's name (a PostgreSQL fact).
	TLSSession bool              `json:"tls_session,omitempty"`
	Roles      map[string]DBRole `json:"roles,omitempty"`
	// Archiver is the node's WAL archiver (pg_stat_archiver); nil when
	// the node was not reached.
	Archiver *Archiver `json:"archiver,omitempty"`
}

// Archiver is what pg_stat_archiver says of a node's WAL archiving, with
// archive_mode, which says whether the archiver runs at all. Counts and
// times run from the statistics' last reset; times are zero when nothing
// was archived (or failed) since.
//
// While archive_command fails, PostgreSQL keeps every WAL file from the
// failing one on in pg_wal, and BASE_BACKUP run with WAIT (the default)
// waits for the archiver before it ends.
type Archiver struct {
	Mode             string    `json:"mode"` // archive_mode: off, on, always
	ArchivedCount    int64     `json:"archived_count"`
	LastArchivedWAL  string    `json:"last_archived_wal,omitempty"`
	LastArchivedTime time.Time `json:"last_archived_time,omitzero"`
	FailedCount      int64     `json:"failed_count"`
	LastFailedWAL    string    `json:"last_failed_wal,omitempty"`
	LastFailedTime   time.Time `json:"last_failed_time,omitzero"`
}

// Failing reports whether the archiver's latest attempt failed: a
// failure newer than the last success, or failures and no success at
// all. An archiver that is off never fails.
func (a *Archiver) Failing() bool {
	if a == nil || a.Mode == "off" || a.Mode == "" || a.FailedCount == 0 || a.LastFailedTime.IsZero() {
		return false
	}
	return a.ArchivedCount == 0 || a.LastArchivedTime.IsZero() || a.LastFailedTime.After(a.LastArchivedTime)
}

// AsideDir is a node's former data directory, kept beside the current one.
type AsideDir struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
	// Owned: it carries pgha's marker for this cluster (or is a data
	// directory an older pgha made); only such a directory is removed.
	Owned bool `json:"owned"`
}

// Role derives primary/standby/unknown from what PostgreSQL said.
func (n *Node) Role() Role {
	switch {
	case n == nil || !n.Reachable:
		return RoleUnknown
	case n.InRecovery:
		return RoleStandby
	default:
		return RolePrimary
	}
}

// LSN is the node's newest known WAL position: written on a primary,
// replayed on a standby.
func (n *Node) LSN() LSN {
	if n.InRecovery {
		return n.ReplayLSN
	}
	return n.CurrentLSN
}

// Slot returns the replication slot of that name, or nil.
func (n *Node) Slot(name string) *Slot {
	for i := range n.Slots {
		if n.Slots[i].Name == name {
			return &n.Slots[i]
		}
	}
	return nil
}

// Replica returns the pg_stat_replication row whose application_name is name, or nil.
func (n *Node) Replica(name string) *Replica {
	for i := range n.Replicas {
		if n.Replicas[i].ApplicationName == name {
			return &n.Replicas[i]
		}
	}
	return nil
}

// TimelineSwitch is one line of a timeline history file: the node's
// history left timeline Parent at SwitchLSN.
type TimelineSwitch struct {
	Parent    int `json:"parent"`
	SwitchLSN LSN `json:"switch_lsn"`
}

// Upstream is a standby's WAL receiver (pg_stat_wal_receiver).
type Upstream struct {
	Status string `json:"status"` // streaming, catchup, ...
	// Host and Port are the sender's, as the standby's primary_conninfo
	// names it (a container name on Docker), not as pgha reaches it.
	Host string `json:"host"`
	Port int    `json:"port"`
	Slot string `json:"slot,omitempty"`
	// LastMessageAge is how long ago the receiver last heard from its
	// sender (WAL or keepalive): now() - last_msg_receipt_time, both read
	// from the standby's clock by the standby, so no clock skew between
	// hosts enters it. The watcher's heartbeat writes WAL every check, so
	// on a live primary it stays under a check interval; it grows while
	// the primary is paused, cut off or wedged. Zero also when the
	// receiver has received nothing yet (then it is not streaming).
	LastMessageAge time.Duration `json:"last_message_age,omitempty"`
}

// Slot is a replication slot (pg_replication_slots).
type Slot struct {
	Name       string `json:"name"`
	Type       string `json:"type"` // physical or logical
	Active     bool   `json:"active"`
	ActivePID  int    `json:"active_pid,omitempty"`
	RestartLSN LSN    `json:"restart_lsn,omitempty"`
}

// Replica is one row of pg_stat_replication on a primary.
type Replica struct {
	ApplicationName string        `json:"application_name"`
	ClientAddr      string        `json:"client_addr,omitempty"`
	State           string        `json:"state"`
	SentLSN         LSN           `json:"sent_lsn"`
	ReplayLSN       LSN           `json:"replay_lsn"`
	ReplayLag       time.Duration `json:"replay_lag,omitempty"`
	// SyncState is "async", "potential", "sync" or "quorum"; a standby
	// whose confirmation a commit waits for is "sync" (priority) or
	// "quorum" (any). SyncPriority is its place in
	// synchronous_standby_names (0: not listed).
	SyncState    string `json:"sync_state"`
	SyncPriority int    `json:"sync_priority,omitempty"`
	// FlushLSN is what the standby has written durably.
	FlushLSN LSN `json:"flush_lsn,omitempty"`
	// PID is the WAL sender's; a slot's ActivePID names it too.
	PID int `json:"pid,omitempty"`
}

// Setting is one row of pg_settings.
type Setting struct {
	Value          string `json:"value"`          // pg_settings.setting, in Unit
	Unit           string `json:"unit,omitempty"` // e.g. "8kB", "MB", "ms"
	Context        string `json:"context"`        // postmaster (restart), sighup (reload), ...
	VarType        string `json:"vartype"`        // bool, integer, real, string, enum
	PendingRestart bool   `json:"pending_restart"`
	Source         string `json:"source,omitempty"`
}

// DBRole is a database role relevant to pgha (the superuser, the replication user).
type DBRole struct {
	CanLogin    bool `json:"can_login"`
	Replication bool `json:"replication"`
	Superuser   bool `json:"superuser"`
	HasPassword bool `json:"has_password"`
	// PasswordMatches: the stored SCRAM verifier matches the desired
	// password (checked by the observer without sending the password).
	PasswordMatches bool `json:"password_matches"`
}

// Catalog is what pgha observed of its Redis catalog.
type Catalog struct {
	Configured bool   `json:"configured"`
	Address    string `json:"address,omitempty"`
	Managed    bool   `json:"managed"`
	// DirExists: the managed Redis's directory exists (local runtime).
	DirExists bool `json:"dir_exists,omitempty"`
	// DirForeign says why pgha will not delete that directory (its
	// redis.conf is not pgha's); "" when it is pgha's.
	DirForeign string `json:"dir_foreign,omitempty"`
	Reachable  bool   `json:"reachable"`
	// Open: it answers commands from a client that sent no password
	// (no requirepass): whoever reaches it can rewrite the record or
	// break the lock.
	Open   bool           `json:"open,omitempty"`
	Error  string         `json:"error,omitempty"`
	Record *ClusterRecord `json:"record,omitempty"`
	Lock   *Lock          `json:"lock,omitempty"`
	// Leader is the watcher holding the leader lease (`pgha watch`), nil
	// when none runs or it was not read.
	Leader *Lock `json:"leader,omitempty"`
	// Members are the node agents' member leases the store holds, by
	// node (`pgha agent`); nil when the file declares no agents or they
	// were not read. A node absent from a non-nil map has no agent that
	// reaches the authority: it is stopped, or its host is cut off.
	Members map[string]Lock `json:"members,omitempty"`
	// Backups are the catalog's backup records (read only when the file
	// declares backups); nil when it holds none or was not read.
	Backups []Backup `json:"backups,omitempty"`
}

// Authority is what was observed of an etcd authority.
type Authority struct {
	Kind      string   `json:"kind"` // "etcd"
	Endpoints []string `json:"endpoints"`
	// Answering is how many members answered a status request; Reachable
	// that the record could be read (a majority answers).
	Answering int    `json:"answering"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// ClusterRecord is the cluster as last recorded in the catalog by an apply.
type ClusterRecord struct {
	Name       string    `json:"name"`
	Primary    string    `json:"primary"`
	Nodes      []string  `json:"nodes"`
	Generation int64     `json:"generation"`
	SystemID   string    `json:"system_id,omitempty"`
	Timeline   int       `json:"timeline,omitempty"`
	UpdatedAt  time.Time `json:"updated_at"`
	// Rejoin lists former primaries (failed over, fenced) that must be
	// rewound before they may follow again.
	Rejoin []string `json:"rejoin,omitempty"`
	// Event is what made this record: "record", "switchover" or
	// "failover". Plans name a role change by it.
	Event string `json:"event,omitempty"`
	// SwitchingTo is the intent of a switchover under way: the node it
	// hands the primary role to, written (at the record's generation,
	// compare-and-set) before the switchover stops anything, and cleared
	// by the record written once the target is promoted, or by a
	// rollback. It is what tells a primary stopped by an interrupted
	// switchover (to be finished, losing nothing) from one that crashed
	// (to be restarted or failed over): both leave the old primary
	// stopped and the others standbys. "" when none is under way.
	SwitchingTo string `json:"switching_to,omitempty"`
	// SwitchingFrom is the primary that switchover stops: Primary, unless
	// the record was not written after an earlier role change (a pgha
	// killed between a promotion and its record).
	SwitchingFrom string `json:"switching_from,omitempty"`
	// SwitchingSince is when that intent was written.
	SwitchingSince time.Time `json:"switching_since,omitzero"`
	// Sync is the synchronous replication of Primary as last confirmed,
	// like Patroni's /sync key: a failover promotes only a standby it
	// names. nil when replication was never synchronous.
	Sync *SyncRecord `json:"sync,omitempty"`
	// Revision counts the writes of the record. A writer hands the store
	// the record it read and changed, Revision included; the store writes
	// it only if the stored revision is still that one, and stores it
	// one higher. The generation fences role changes only: a relax of
	// the synchronous set, a switchover's intent leave it where it was,
	// and a writer holding a record read before them would put the old
	// synchronous set back unseen (a lost update) if the generation were
	// the only check.
	Revision int64 `json:"revision,omitempty"`
}

// SyncRecord is the synchronous set of a primary, recorded before the
// primary can be lost, since it cannot be asked afterwards.
//
// The invariant pgha keeps: every commit the primary acknowledged while
// this record stood was confirmed by at least Count of Standbys. So any
// len(Standbys)-Count+1 of them include one that holds every
// acknowledged commit, and the most advanced of those holds them all.
// Hence the order of writes: a record that names standbys is written
// only after the primary's synchronous_standby_names lists exactly them
// and Count of them were seen synchronous; before the setting changes
// (or is emptied), the record is emptied first.
type SyncRecord struct {
	// Standbys and Count: synchronous_standby_names is "ANY Count (...)"
	// or "FIRST Count (...)" of Standbys. Empty: no standby is known to
	// hold every acknowledged commit (not yet confirmed, or relaxed), and
	// no failover is safe without -force.
	Standbys []string `json:"standbys,omitempty"`
	Count    int      `json:"count,omitempty"`
	Mode     string   `json:"mode,omitempty"`
	// Relaxed: the watcher made the primary asynchronous because fewer
	// standbys were healthy than synchronous { standbys } asks (strict =
	// false); Reason says why, Since when.
	Relaxed bool      `json:"relaxed,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since,omitzero"`
}

// Confirmed says whether the record names a synchronous set.
func (r *SyncRecord) Confirmed() bool { return r != nil && len(r.Standbys) > 0 && r.Count > 0 }

// Switching says whether the record holds a switchover intent.
func (r *ClusterRecord) Switching() bool { return r != nil && r.SwitchingTo != "" }

// SwitchingFromNode is the primary the intent's switchover stops:
// SwitchingFrom, or Primary for an intent that does not name it.
func (r *ClusterRecord) SwitchingFromNode() string {
	if r.SwitchingFrom != "" {
		return r.SwitchingFrom
	}
	return r.Primary
}

// Lock is the holder of the cluster's apply lock.
type Lock struct {
	ID        string    `json:"id"`
	Owner     string    `json:"owner"` // OS user
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Operation string    `json:"operation"`
	Created   time.Time `json:"created"`
	// Boot is the holder's kernel boot ID and Start its process start
	// time (clock ticks since boot): with Host, PID and PIDNamespace they
	// tell a live holder on this host from a pid that is gone or reused.
	Boot  string `json:"boot,omitempty"`
	Start uint64 `json:"start,omitempty"`
	// PIDNamespace is the holder's pid namespace ("pid:[4026531836]"):
	// a container sharing the host's name and kernel has pids of its own.
	PIDNamespace string `json:"pid_namespace,omitempty"`
}

// String says who holds the lock in one line, for error messages.
func (l *Lock) String() string {
	return fmt.Sprintf("ID %s, %s@%s pid %d, operation %q, since %s",
		l.ID, l.Owner, l.Host, l.PID, l.Operation, l.Created.UTC().Format(time.RFC3339))
}

// Backup is one backup as the catalog records it.
type Backup struct {
	ID            string    `json:"id"`
	Cluster       string    `json:"cluster"`
	Type          string    `json:"type"`   // full | incremental | differential
	Method        string    `json:"method"` // physical | logical
	Parent        string    `json:"parent,omitempty"`
	Root          string    `json:"root,omitempty"` // the full its chain starts from
	Node          string    `json:"node"`
	ServerVersion int       `json:"server_version"`
	SystemID      string    `json:"system_id"`
	Timeline      int       `json:"timeline"`
	StartLSN      string    `json:"start_lsn"`
	StopLSN       string    `json:"stop_lsn"`
	Started       time.Time `json:"started"`
	Finished      time.Time `json:"finished"`
	DatabaseBytes int64     `json:"database_bytes"`
	StoredBytes   int64     `json:"stored_bytes"`
	Compression   string    `json:"compression"`
	Format        string    `json:"format,omitempty"` // base | wal: how the stored file is restored
	// ServerManifest is the server's backup_manifest, beside a base backup.
	ServerManifest string `json:"server_manifest,omitempty"`
	// RestorePoint names the WAL record a WAL-based backup ends at.
	RestorePoint string `json:"restore_point,omitempty"`
	Checksum     string `json:"checksum"` // sha256:<hex> of the stored file
	Path         string `json:"path"`     // the stored file, in the repository
	Status       string `json:"status"`   // running | complete | failed | expired
	// The last `pgha backup verify` of this backup, on the catalog's
	// record only: the repository's manifest says what was stored and is
	// not rewritten after the fact (a rewrite racing an expiry could
	// bring an expired backup back). Verify is "passed" or
	// "failed: <reason>"; VerifyMode is VerifyRead or VerifyRestore.
	VerifiedAt time.Time `json:"verified_at,omitzero"`
	Verify     string    `json:"verify,omitempty"`
	VerifyMode string    `json:"verify_mode,omitempty"`
	// VerifySeconds is how long that verify took (drills record it).
	VerifySeconds float64 `json:"verify_seconds,omitempty"`
}

// How a backup was verified.
const (
	// VerifyRead: each stored file of the chain matched its manifest's
	// checksum and its archive read back to the end.
	VerifyRead = "read"
	// VerifyRestore: the chain was restored into a scratch instance,
	// which started, reached the backup's moment and answered a query.
	VerifyRestore = "restore"
	// VerifyDrill: a restore drill restored the newest chain into a
	// scratch instance, replayed the WAL archive to its end, and amcheck
	// found the database sound.
	VerifyDrill = "drill"
)

// VerifyPassed is Verify's value for a verify that found nothing wrong.
const VerifyPassed = "passed"

// Verified says whether the backup's last verify passed, and whether
// it was verified at all.
func (b Backup) Verified() (passed, ok bool) {
	if b.Verify == "" {
		return false, false
	}
	return b.Verify == VerifyPassed, true
}
