package reconcile

import (
	"fmt"
	"time"

	"github.com/pgha/pgha/config"
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
	Address    string      `json:"address"`
	Reachable  bool        `json:"reachable"`
	Primary    string      `json:"recorded_primary,omitempty"`
	Generation int64       `json:"generation,omitempty"`
	Lock       *state.Lock `json:"lock,omitempty"`
	Error      string      `json:"error,omitempty"`
}

// BuildStatus summarises an observation for people and scripts.
func BuildStatus(c *config.Cluster, s *state.Cluster) Status {
	out := Status{Cluster: c.Name, DeclaredPrimary: c.Primary, ObservedAt: s.ObservedAt, Nodes: []NodeStatus{}}
	var primary *state.Node
	for _, n := range s.Nodes {
		if n.Role() == state.RolePrimary {
			primary = n
		}
	}
	for _, cn := range c.Nodes {
		n := s.Node(cn.Name)
		if n == nil {
			n = &state.Node{Name: cn.Name}
		}
		ns := NodeStatus{Name: cn.Name, Role: n.Role(), Running: n.Running, Reachable: n.Reachable, Host: cn.Host,
			Port: cn.Port, DataDir: cn.DataDir, Timeline: n.Timeline, Version: n.ServerVersion}
		if !n.Reachable && n.Error != "not running" {
			ns.Error = n.Error
		}
		if n.Reachable {
			ns.LSN = n.LSN().String()
		}
		if n.Role() == state.RoleStandby {
			ns.Slot = cn.Slot
			if u := n.Upstream; u != nil {
				ns.Upstream = fmt.Sprintf("%s:%d", u.Host, u.Port)
				ns.Streaming = u.Status == "streaming"
				ns.Slot = u.Slot
			}
			if primary != nil {
				lag := int64(primary.CurrentLSN) - int64(n.ReplayLSN)
				lag = max(lag, 0)
				ns.LagBytes = &lag
				var secs float64
				if r := primary.Replica(cn.Name); r != nil {
					secs = r.ReplayLag.Seconds()
				}
				ns.LagSeconds = &secs
			}
		}
		if n.Role() == state.RolePrimary {
			zero, secs := int64(0), 0.0
			ns.LagBytes, ns.LagSeconds = &zero, &secs
		}
		out.Nodes = append(out.Nodes, ns)
	}
	for _, n := range s.Undeclared {
		ns := NodeStatus{Name: n.Name, Role: n.Role(), Running: n.Running, Reachable: n.Reachable, Host: n.Host,
			Port: n.Port, DataDir: n.DataDir, Timeline: n.Timeline, Version: n.ServerVersion, Undeclared: true}
		if !n.Reachable && n.Error != "not running" {
			ns.Error = n.Error
		}
		if n.Reachable {
			ns.LSN = n.LSN().String()
		}
		if u := n.Upstream; u != nil {
			ns.Upstream, ns.Streaming, ns.Slot = fmt.Sprintf("%s:%d", u.Host, u.Port), u.Status == "streaming", u.Slot
		}
		out.Nodes = append(out.Nodes, ns)
	}
	if c.Catalog != nil {
		cs := &CatalogState{Address: c.Catalog.Address, Reachable: s.Catalog.Reachable, Lock: s.Catalog.Lock, Error: s.Catalog.Error}
		if r := s.Catalog.Record; r != nil {
			cs.Primary, cs.Generation = r.Primary, r.Generation
		}
		out.Catalog = cs
	}
	return out
}
