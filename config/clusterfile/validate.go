package clusterfile

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/pgha/pgha/config"
)

// validate checks what holds across blocks: there are nodes, the primary
// is one of them, names, endpoints and slots are unique. It runs on a
// partly decoded cluster too (a value that failed to decode is zero and is
// skipped), so that one pass reports every problem.
func (d *decoder) validate(c *config.Cluster) {
	if len(c.Nodes) == 0 && !d.clusterBodyBad {
		d.errorAt(d.clusterRange, "No nodes",
			"Declare at least one node, e.g.\n  node \"db1\" {\n    port = 5441\n  }")
	}
	names := map[string]*config.Node{}
	endpoints := map[string]*config.Node{}
	slots := map[string]*config.Node{}
	for _, n := range c.Nodes {
		if first := names[n.Name]; first != nil {
			d.errorAt(d.nameRanges[n], "Duplicate node",
				fmt.Sprintf("A node named %q is already declared at %s. Give each node its own name.", n.Name, pos(first.DeclRange)))
			continue
		}
		names[n.Name] = n
		if n.Host != "" && n.Port != 0 {
			ep := endpointKey(n.Host, n.Port)
			if first := endpoints[ep]; first != nil {
				d.errorAt(d.rangeOf(&n.Port, n.DeclRange), "Two nodes on one port",
					fmt.Sprintf("Node %q uses %s, as node %q does (%s); 127.0.0.1, localhost and ::1 are one host. Give each node its own port.",
						n.Name, d.endpoint(&n.Host, &n.Port, n.Host, n.Port), first.Name, pos(first.DeclRange)))
			} else {
				endpoints[ep] = n
			}
		}
		if n.Slot != "" {
			if n.Slot == config.BackupSlot && c.Backup != nil {
				d.errorAt(d.rangeOf(&n.Slot, n.DeclRange), "Reserved slot name",
					fmt.Sprintf("Slot %q holds the WAL of incremental backups (the backup block declares it). Give node %q another slot.", config.BackupSlot, n.Name))
			} else if n.Slot == config.ArchiveSlot && c.Backup != nil && c.Backup.Archive != nil {
				d.errorAt(d.rangeOf(&n.Slot, n.DeclRange), "Reserved slot name",
					fmt.Sprintf("Slot %q holds the WAL the continuous archive has not stored yet (the backup block's archive declares it). Give node %q another slot.", config.ArchiveSlot, n.Name))
			} else if first := slots[n.Slot]; first != nil {
				d.errorAt(d.rangeOf(&n.Slot, n.DeclRange), "Duplicate slot name",
					fmt.Sprintf("Nodes %q and %q both declare slot %s. Each standby needs its own slot.", first.Name, n.Name, d.show(&n.Slot, n.Slot)))
			} else {
				slots[n.Slot] = n
			}
		}
	}
	if d.primaryDecoded && len(c.Nodes) > 0 && names[c.Primary] == nil {
		declared := make([]string, 0, len(names))
		for _, n := range c.Nodes {
			if names[n.Name] == n {
				declared = append(declared, n.Name)
			}
		}
		d.errorAt(c.PrimaryRange, "Unknown primary",
			fmt.Sprintf("primary = %s names no node; the declared nodes are: %s. Name one of them, or declare the node.",
				d.show(&c.Primary, c.Primary), strings.Join(declared, ", ")))
	}
	if cat := c.Catalog; cat != nil && cat.Address != "" {
		if h, p, err := config.SplitAddress(cat.Address); err == nil {
			if n := endpoints[endpointKey(h, p)]; n != nil {
				d.errorAt(d.rangeOf(&cat.Address, cat.DeclRange), "Catalog and node on one port",
					fmt.Sprintf("The Redis catalog at %s uses the host and port of node %q (%s). Give Redis its own port.",
						d.show(&cat.Address, cat.Address), n.Name, pos(n.DeclRange)))
			}
		}
		if h, _, err := config.SplitAddress(cat.Address); err == nil && cat.Managed && !c.IsDocker() && !loopback(h) {
			d.errorAt(d.rangeOf(&cat.Address, cat.DeclRange), "Managed catalog off loopback",
				fmt.Sprintf("On the local runtime the managed Redis listens on loopback only (127.0.0.1, ::1 or localhost), where pgha on this host reaches it; %s would expose the cluster's lock and record. "+
					"For a catalog other hosts reach, run Redis yourself with a password (managed = false).", d.show(&cat.Address, cat.Address)))
		}
		if h, _, err := config.SplitAddress(cat.Address); err == nil && cat.Managed && c.IsDocker() {
			if engine := c.Runtime.Docker.TCPHost(); engine != "" && loopback(h) && !loopback(engine) {
				d.errorAt(d.rangeOf(&cat.Address, cat.DeclRange), "Managed catalog on another host's loopback",
					fmt.Sprintf("The managed Redis runs on the engine's host (%s) and is published at %s there, on its loopback, where pgha on this host cannot reach it. "+
						"Write an address of that host that pgha reaches: the nodes' (bind, by default the engine's) with a port of its own.", d.show(&c.Runtime.Docker.Host, engine), d.show(&cat.Address, cat.Address)))
			}
		}
		if cat.Managed {
			if n := names["redis"]; n != nil {
				d.errorAt(d.nameRanges[n], "Reserved node name",
					"The managed Redis catalog keeps its data in <data_dir>/redis, where this node's data would go. Rename the node.")
			}
		}
	}
	d.validateHealthPorts(c)
	d.validateSynchronous(c)
	d.validateAgent(c)
}

// validateSynchronous checks that the synchronous block can be met and
// kept: enough standbys, a catalog to record the synchronous set in, and
// synchronous_standby_names left to pgha.
func (d *decoder) validateSynchronous(c *config.Cluster) {
	sy := c.Replication.Synchronous
	if sy == nil {
		return
	}
	if standbys := len(c.Nodes) - 1; len(c.Nodes) > 0 && sy.Standbys > standbys {
		d.errorAt(d.rangeOf(&sy.Standbys, sy.DeclRange), "Too few standbys for synchronous replication",
			fmt.Sprintf("standbys = %d, but the cluster declares %d node(s), so %d standby(s) at most: every commit would wait for ever. Declare more nodes or lower standbys.",
				sy.Standbys, len(c.Nodes), standbys))
	}
	if !c.HasAuthority() {
		d.errorAt(sy.DeclRange, "Synchronous replication without a catalog",
			"pgha records which standbys are synchronous in the cluster record, so that a failover promotes only one of them (the primary is gone by then and cannot be asked). Declare a catalog \"redis\" or an authority \"etcd\" block.")
	}
	const ssn = "synchronous_standby_names"
	where := ""
	if _, ok := c.Postgres.Parameters[ssn]; ok {
		where = "postgres { parameters }"
	}
	for _, n := range c.Nodes {
		if _, ok := n.Parameters[ssn]; ok && where == "" {
			where = fmt.Sprintf("node %q's parameters", n.Name)
		}
	}
	if where != "" {
		d.errorAt(sy.DeclRange, "synchronous_standby_names set twice",
			fmt.Sprintf("%s sets %s, which pgha sets on the primary from this synchronous block (and changes on failover, or when it relaxes it). Remove it from the parameters.", where, ssn))
	}
}

// validateAgent checks that agents have an authority to hold their
// member leases in.
func (d *decoder) validateAgent(c *config.Cluster) {
	if c.Agent != nil && c.Catalog == nil {
		d.errorAt(c.Agent.DeclRange, "Agents without a catalog",
			"pgha agent holds each node's member lease in the catalog and fences its primary when it cannot renew it: without a catalog there is nothing to renew it in. Declare a catalog \"redis\" block, or remove the agent block.")
	}
}

// validateHealthPorts checks the ports `pgha watch` listens on: a node's
// health_port needs the api block that serves it, and no two listeners
// (the API, each health port) share a port.
func (d *decoder) validateHealthPorts(c *config.Cluster) {
	used := map[int]string{}
	if c.API != nil {
		if _, p, err := config.SplitAddress(c.API.Listen); err == nil && p != 0 {
			used[p] = "the api (listen = " + c.API.Listen + ")"
		}
	}
	for _, n := range c.Nodes {
		if n.HealthPort == 0 {
			continue
		}
		r := d.rangeOf(&n.HealthPort, n.DeclRange)
		if c.API == nil {
			d.errorAt(r, "health_port without an api block",
				fmt.Sprintf("`pgha watch` serves node %q's health checks on health_port only with the API on: add\n  api {\n    listen = \"127.0.0.1:8088\"\n  }", n.Name))
			continue
		}
		if first, ok := used[n.HealthPort]; ok {
			d.errorAt(r, "Two listeners on one port",
				fmt.Sprintf("health_port %d of node %q is already %s. Give each node its own health_port.", n.HealthPort, n.Name, first))
			continue
		}
		used[n.HealthPort] = fmt.Sprintf("node %q's health_port", n.Name)
	}
}

// rangeOf is the range of the expression that gave a field, else fallback.
func (d *decoder) rangeOf(field any, fallback hcl.Range) hcl.Range {
	if r, ok := d.ranges[field]; ok {
		return r
	}
	return fallback
}

// endpoint renders host:port for a diagnostic, unless either is sensitive.
func (d *decoder) endpoint(hostField, portField any, host string, port int) string {
	if d.sensitive[hostField] || d.sensitive[portField] {
		return "the same host and port (given by env() or file(), so not shown)"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// endpointKey treats the loopback spellings as one host, so that
// "localhost:5441" and "127.0.0.1:5441" are seen to collide.
func endpointKey(host string, port int) string {
	host = strings.ToLower(strings.Trim(host, "[]"))
	switch host {
	case "localhost", "127.0.0.1", "::1":
		host = "loopback"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// loopback: the host names this machine's loopback interface only.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
