package report

import (
	"time"

	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/state"
)

// Status is what `pgha status -json` prints. It is a contract other tools
// read: fields are only ever added.
type Status struct {
	Cluster         string        `json:"cluster"`
	DeclaredPrimary string        `json:"declared_primary"`
	ObservedAt      time.Time     `json:"observed_at"`
	Nodes           []NodeStatus  `json:"nodes"`
	Catalog         *CatalogState `json:"catalog,omitempty"`
	// RuntimeError says why the runtime could not be observed (a Docker
	// engine that does not answer or refuses pgha's certificate): the
	// nodes' containers are unknown, not stopped.
	RuntimeError string `json:"runtime_error,omitempty"`
	// Synchronous is the primary's synchronous replication: declared,
	// in effect, recorded, and why writes wait if they do; nil when
	// neither declared nor in effect.
	Synchronous *plan.SyncStatus `json:"synchronous,omitempty"`
	// Agents is each node's agent (`pgha agent`) as the catalog's member
	// leases show it, in declaration order; nil when the file declares
	// no agents or the leases could not be read.
	Agents []AgentStatus `json:"agents,omitempty"`
}

// AgentStatus is one node's agent: whether it holds its member lease.
type AgentStatus struct {
	Node   string      `json:"node"`
	Held   bool        `json:"held"`
	Holder *state.Lock `json:"holder,omitempty"`
}

// NodeStatus is one node in Status.
type NodeStatus struct {
	Name      string     `json:"name"`
	Role      state.Role `json:"role"` // primary | standby | unknown
	Running   bool       `json:"running"`
	Reachable bool       `json:"reachable"`
	Host      string     `json:"host"`
	Port      int        `json:"port"`
	DataDir   string     `json:"data_dir"`
	Timeline  int        `json:"timeline"`
	LSN       string     `json:"lsn"`
	// LagBytes is how far the node's replay is behind the primary's WAL;
	// null when it cannot be known (the node or the primary is down).
	LagBytes   *int64   `json:"lag_bytes"`
	LagSeconds *float64 `json:"lag_seconds"`
	Slot       string   `json:"slot,omitempty"`
	Upstream   string   `json:"upstream,omitempty"`
	Streaming  bool     `json:"streaming"`
	Version    int      `json:"server_version,omitempty"`
	Error      string   `json:"error,omitempty"`
	// Undeclared: the runtime found this node, cluster.hcl does not
	// declare it (see state.Cluster.Undeclared).
	Undeclared bool `json:"undeclared,omitempty"`
}

// CatalogState is the catalog part of Status.
type CatalogState struct {
	// Kind is where the record, lock and leader are read: "redis" (the
	// catalog) or "etcd" (authority "etcd"; Address lists its endpoints).
	Kind    string `json:"kind,omitempty"`
	Address string `json:"address"`
	// Members and Answering: an etcd authority's members declared and
	// answering (0 for Redis).
	Members    int         `json:"members,omitempty"`
	Answering  int         `json:"answering,omitempty"`
	Reachable  bool        `json:"reachable"`
	Primary    string      `json:"recorded_primary,omitempty"`
	Generation int64       `json:"generation,omitempty"`
	Lock       *state.Lock `json:"lock,omitempty"`
	// Leader is the `pgha watch` holding the leader lease: the one
	// process that acts on its own.
	Leader *state.Lock `json:"leader,omitempty"`
	// Switching is the record's switchover intent ("db1 -> db2 since
	// 2026-12-01T06:00:00Z"): a switchover under way, or interrupted and
	// to be finished by the next apply or watcher.
	Switching string `json:"switching,omitempty"`
	Error     string `json:"error,omitempty"`
}
