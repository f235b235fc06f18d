package plan

import (
	"bytes"
	"encoding/json"
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testCluster is the three-node cluster of the root cluster.hcl, built in
// Go so that plan tests do not depend on the parser.
func testCluster() *config.Cluster {
	c := &config.Cluster{
		Name: "demo", Primary: "db1", File: "/srv/pgha/cluster.hcl", Dir: "/srv/pgha", Hash: "sha256:test",
		Postgres:    config.Postgres{Superuser: "postgres", Password: config.NewSecret("su-secret-1"), Parameters: map[string]string{"shared_buffers": "128MB"}},
		Runtime:     config.Runtime{Kind: "local", DataDir: "/srv/pgha/data", RunAs: "postgres"},
		Replication: config.Replication{User: "replicator", Password: config.NewSecret("repl-secret-2")},
		Catalog:     &config.Catalog{Kind: "redis", Address: "127.0.0.1:6390", Managed: true, DataDir: "/srv/pgha/data/redis"},
	}
	for i, name := range []string{"db1", "db2", "db3"} {
		c.Nodes = append(c.Nodes, &config.Node{Name: name, Host: "127.0.0.1", Port: 5441 + i, Slot: name, DataDir: "/srv/pgha/data/" + name})
	}
	return c
}

// settingsOf returns what pg_settings would say for a node configured
// exactly as desired.
func settingsOf(c *config.Cluster, n *config.Node) map[string]state.Setting {
	out := map[string]state.Setting{}
	for k, v := range DesiredSettings(c, n, c.Primary) {
		s := state.Setting{Value: v, Context: "sighup", VarType: "string"}
		switch k {
		case "port", "max_wal_senders", "max_replication_slots":
			s.VarType, s.Context = "integer", "postmaster"
		case "shared_buffers":
			s.VarType, s.Context, s.Unit, s.Value = "integer", "postmaster", "8kB", "16384"
		case "wal_keep_size":
			s.VarType, s.Unit, s.Value = "integer", "MB", "128"
		case "hot_standby", "wal_log_hints":
			s.VarType, s.Context = "bool", "postmaster"
		case "wal_level", "password_encryption":
			s.VarType = "enum"
		case "listen_addresses", "unix_socket_directories":
			s.Context = "postmaster"
		}
		out[k] = s
	}
	return out
}

// converged is the observation of a cluster that matches testCluster.
func converged(c *config.Cluster) *state.Cluster {
	s := &state.Cluster{Name: c.Name, Catalog: state.Catalog{Configured: true, Address: c.Catalog.Address, Managed: true, Reachable: true, DirExists: true,
		Record: &state.ClusterRecord{Name: "demo", Primary: "db1", Nodes: []string{"db1", "db2", "db3"}, Generation: 1}}}
	for _, cn := range c.Nodes {
		n := &state.Node{Name: cn.Name, Host: cn.Host, Port: cn.Port, DataDir: cn.DataDir, DirExists: true, Initialized: true,
			Running: true, PID: 100, Reachable: true, ServerVersion: 150018, SystemID: "7311111111111111111", Timeline: 1,
			Settings: settingsOf(c, cn), Roles: map[string]state.DBRole{"replicator": {CanLogin: true, Replication: true, HasPassword: true, PasswordMatches: true}}}
		if cn.Name == c.Primary {
			n.CurrentLSN = 0x3000148
			n.Slots = []state.Slot{{Name: "db2", Type: "physical", Active: true, ActivePID: 200, RestartLSN: 0x3000148}, {Name: "db3", Type: "physical", Active: true, ActivePID: 201, RestartLSN: 0x3000148}}
			n.Replicas = []state.Replica{{ApplicationName: "db2", State: "streaming"}, {ApplicationName: "db3", State: "streaming"}}
		} else {
			n.InRecovery, n.StandbySignal = true, true
			n.ReceiveLSN, n.ReplayLSN = 0x3000148, 0x3000148
			n.Upstream = &state.Upstream{Status: "streaming", Host: "127.0.0.1", Port: 5441, Slot: cn.Name}
		}
		s.Nodes = append(s.Nodes, n)
	}
	return s
}

// afterFailover is the cluster after `pgha failover` promoted db2: db1 is
// stopped and fenced, db3 follows db2, the catalog records generation 2.
func afterFailover(c *config.Cluster, s *state.Cluster) {
	stop(s.Node("db1"))
	s.Node("db1").StandbySignal = true
	n := s.Node("db2")
	n.InRecovery, n.Upstream, n.Timeline, n.CurrentLSN = false, nil, 2, 0x3000200
	n.Slots = []state.Slot{{Name: "db3", Type: "physical", Active: true}, {Name: "db1", Type: "physical"}}
	n.History = []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x3000148}}
	n.DatabaseBytes = 1 << 30
	n.Settings["primary_conninfo"] = state.Setting{Value: "", VarType: "string", Context: "sighup"}
	n.Settings["primary_slot_name"] = state.Setting{Value: "", VarType: "string", Context: "sighup"}
	d3 := s.Node("db3")
	d3.Upstream = &state.Upstream{Status: "streaming", Host: "127.0.0.1", Port: 5442, Slot: "db3"}
	d3.Settings = settingsOf(c, c.Node("db3"))
	d3.Settings["primary_conninfo"] = state.Setting{Value: c.PrimaryConninfo(c.Node("db3"), c.Node("db2")), VarType: "string", Context: "sighup"}
	s.Catalog.Record = &state.ClusterRecord{Name: "demo", Primary: "db2", Nodes: []string{"db1", "db2", "db3"}, Generation: 2, Timeline: 2, Rejoin: []string{"db1"}}
}

// dockerize turns the converged local fixture into its docker twin.
func dockerize(c *config.Cluster, s *state.Cluster) {
	c.Runtime = config.Runtime{Kind: "docker", Docker: config.Docker{Image: "postgres:17", RedisImage: "redis:7",
		Network: "pgha-demo", Bind: "127.0.0.1", Prefix: "pgha-demo-"}}
	s.Network = &state.Network{Name: "pgha-demo", Exists: true}
	for _, cn := range c.Nodes {
		cn.DataDir = config.DockerPGData
		n := s.Node(cn.Name)
		n.DataDir = cn.DataDir
		n.Container = &state.Container{Name: "pgha-demo-" + cn.Name, Running: true, Image: "postgres:17"}
		n.Settings = settingsOf(c, cn)
	}
}

var tlsNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// withTLS turns TLS on in c and makes s its converged observation: the
// store holds the CA and every certificate, each node has its own
// installed, its settings and pg_hba.conf say ssl.
func withTLS(c *config.Cluster, s *state.Cluster) {
	c.TLS = config.TLS{Enabled: true, Dir: "/srv/pgha/data/tls"}
	s.ObservedAt = tlsNow
	s.TLS = &state.TLS{Dir: c.TLS.Dir, CAKey: true, CA: &state.Cert{Fingerprint: "ca0123456789abcdef", NotAfter: tlsNow.AddDate(9, 0, 0), Verified: true},
		Certs: map[string]*state.Cert{}}
	for _, name := range c.CertNames() {
		s.TLS.Certs[name] = &state.Cert{Fingerprint: name + "-0123456789abcdef", NotAfter: tlsNow.AddDate(0, 11, 0), Verified: true, Hosts: CertRequest(c, name).Hosts}
	}
	for _, cn := range c.Nodes {
		n := s.Node(cn.Name)
		n.TLSCert, n.TLSCA = s.TLS.Certs[cn.Name].Fingerprint, s.TLS.CA.Fingerprint
		n.Settings = settingsOf(c, cn)
	}
}

// tlsFromScratch is an existing cluster without TLS seen by a pgha that
// turns it on: an empty store, host lines in pg_hba.conf, ssl off.
func tlsFromScratch(c *config.Cluster, s *state.Cluster) {
	c.TLS = config.TLS{Enabled: true, Dir: "/srv/pgha/data/tls"}
	s.ObservedAt = tlsNow
	s.TLS = &state.TLS{Dir: c.TLS.Dir}
	for _, n := range s.Nodes {
		n.HBAPlainTCP = 3
		for k, v := range map[string]string{"ssl": "off", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key", "ssl_ca_file": ""} {
			n.Settings[k] = state.Setting{Value: v, Context: "sighup", VarType: "string"}
		}
		n.Settings["ssl"] = state.Setting{Value: "off", Context: "sighup", VarType: "bool"}
	}
}

func empty(c *config.Cluster) *state.Cluster {
	s := &state.Cluster{Name: c.Name, Catalog: state.Catalog{Configured: true, Address: c.Catalog.Address, Managed: true, Error: "dial tcp 127.0.0.1:6390: connect: connection refused"}}
	for _, cn := range c.Nodes {
		s.Nodes = append(s.Nodes, &state.Node{Name: cn.Name, Host: cn.Host, Port: cn.Port, DataDir: cn.DataDir, Error: "not running"})
	}
	return s
}

func stop(n *state.Node) {
	*n = state.Node{Name: n.Name, Host: n.Host, Port: n.Port, DataDir: n.DataDir, DirExists: true, Initialized: true, StandbySignal: n.StandbySignal, Error: "not running"}
}

type planCase struct {
	name   string
	mutate func(c *config.Cluster, s *state.Cluster)
	start  func(c *config.Cluster) *state.Cluster
	// kinds is the expected action sequence, as "kind[target]" IDs.
	ids   []string
	diags []string // expected diagnostic summaries (substrings)
}

var planCases = []planCase{
	{name: "empty_cluster", start: empty, ids: []string{
		"catalog.start[redis]", "node.create[db1]", "primary.init[db1]", "node.start[db1]", "role.ensure[replicator]",
		"slot.create[db1/db2]", "slot.create[db1/db3]", "standby.clone[db2]", "node.start[db2]", "standby.clone[db3]", "node.start[db3]",
		"catalog.record[cluster]"}},
	{name: "converged"},
	{name: "stopped_standby", mutate: func(c *config.Cluster, s *state.Cluster) {
		stop(s.Node("db2"))
		p := s.Node("db1")
		p.Slots[0].Active, p.Slots[0].ActivePID = false, 0
	}, ids: []string{"node.start[db2]"}},
	{name: "stopped_primary", mutate: func(c *config.Cluster, s *state.Cluster) {
		stop(s.Node("db1"))
		for _, n := range s.Nodes[1:] {
			n.Upstream = &state.Upstream{Status: "waiting"}
		}
	}, ids: []string{"node.start[db1]"}},
	{name: "missing_slot", mutate: func(c *config.Cluster, s *state.Cluster) {
		p := s.Node("db1")
		p.Slots = p.Slots[1:]
		s.Node("db2").Upstream.Status = "waiting"
	}, ids: []string{"slot.create[db1/db2]"}},
	{name: "orphaned_slot", mutate: func(c *config.Cluster, s *state.Cluster) {
		p := s.Node("db1")
		p.Slots = append(p.Slots, state.Slot{Name: "old_backup_slot", Type: "physical", RestartLSN: 0x1000000}, state.Slot{Name: "busy", Type: "physical", Active: true, ActivePID: 999})
	}, ids: []string{"slot.drop[db1/old_backup_slot]"}, diags: []string{"undeclared slot busy on db1 is in use (pid 999)"}},
	{name: "changed_parameter_reload", mutate: func(c *config.Cluster, s *state.Cluster) {
		c.Postgres.Parameters["wal_keep_size"] = "1GB"
	}, ids: []string{"settings.update[db1]", "settings.update[db2]", "settings.update[db3]"}},
	{name: "changed_parameter_restart", mutate: func(c *config.Cluster, s *state.Cluster) {
		c.Node("db2").Parameters = map[string]string{"shared_buffers": "256MB"}
	}, ids: []string{"settings.update[db2]"}},
	{name: "pending_restart", mutate: func(c *config.Cluster, s *state.Cluster) {
		st := s.Node("db1").Settings["shared_buffers"]
		st.PendingRestart = true
		s.Node("db1").Settings["shared_buffers"] = st
	}, ids: []string{"settings.update[db1]"}},
	{name: "redis_unreachable", mutate: func(c *config.Cluster, s *state.Cluster) {
		c.Catalog.Managed = false
		s.Catalog = state.Catalog{Configured: true, Address: c.Catalog.Address, Error: "dial tcp 127.0.0.1:6390: connect: connection refused"}
		stop(s.Node("db3"))
		p := s.Node("db1")
		p.Slots[1].Active = false
	}, ids: []string{"node.start[db3]"}, diags: []string{"the Redis catalog at 127.0.0.1:6390 is unreachable"}},
	{name: "managed_redis_down", mutate: func(c *config.Cluster, s *state.Cluster) {
		s.Catalog.Reachable, s.Catalog.Record = false, nil
	}, ids: []string{"catalog.start[redis]", "catalog.record[cluster]"}},
	{name: "wrong_upstream", mutate: func(c *config.Cluster, s *state.Cluster) {
		st := s.Node("db3").Settings["primary_conninfo"]
		st.Value = strings.Replace(st.Value, "port=5441", "port=5442", 1)
		s.Node("db3").Settings["primary_conninfo"] = st
		s.Node("db3").Settings["primary_slot_name"] = state.Setting{Value: "", VarType: "string", Context: "sighup"}
	}, ids: []string{"standby.follow[db3]"}},
	{name: "replication_password_changed", mutate: func(c *config.Cluster, s *state.Cluster) {
		r := s.Node("db1").Roles["replicator"]
		r.PasswordMatches = false
		s.Node("db1").Roles["replicator"] = r
	}, ids: []string{"role.ensure[replicator]"}},
	{name: "standby_data_lost", mutate: func(c *config.Cluster, s *state.Cluster) {
		n := s.Node("db3")
		*n = state.Node{Name: "db3", Host: n.Host, Port: n.Port, DataDir: n.DataDir, Error: "not running"}
		s.Node("db1").Slots[1].Active = false
	}, ids: []string{"standby.clone[db3]", "node.start[db3]"}},
	{name: "primary_lost_standbys_have_data", mutate: func(c *config.Cluster, s *state.Cluster) {
		n := s.Node("db1")
		*n = state.Node{Name: "db1", Host: n.Host, Port: n.Port, DataDir: n.DataDir, Error: "not running"}
	}, diags: []string{"primary db1 has no data, but db2 has"}},
	{name: "split_brain", mutate: func(c *config.Cluster, s *state.Cluster) {
		n := s.Node("db2")
		n.InRecovery, n.Upstream, n.Timeline = false, nil, 2
		s.Catalog.Record.Timeline = 1
	}, ids: []string{"node.fence[db2]", "standby.rejoin[db2]"}, diags: []string{"split brain: db1 and db2 both accept writes"}},
	{name: "split_brain_undecided", mutate: func(c *config.Cluster, s *state.Cluster) {
		n := s.Node("db2")
		n.InRecovery, n.Upstream, n.Timeline = false, nil, 2
		s.Catalog.Record = nil
	}, diags: []string{"split brain: db1 and db2 both accept writes"}},
	{name: "switchover", mutate: func(c *config.Cluster, s *state.Cluster) {
		c.Primary = "db2"
	}, ids: []string{"switchover[db2]", "slot.create[db2/db1]", "slot.create[db2/db3]", "standby.rejoin[db1]", "standby.follow[db3]", "catalog.record[cluster]"},
		diags: []string{"db1 is the writable primary, cluster.hcl declares db2"}},
	{name: "switchover_interrupted_old_stopped", mutate: func(c *config.Cluster, s *state.Cluster) {
		// pgha was killed after it stopped db1 cleanly, before it promoted db2.
		c.Primary = "db2"
		stop(s.Node("db1"))
		for _, n := range s.Nodes[1:] {
			n.Upstream = &state.Upstream{Status: "waiting"}
		}
	}, ids: []string{"switchover[db2]", "slot.create[db2/db1]", "slot.create[db2/db3]", "standby.rejoin[db1]", "standby.follow[db3]", "catalog.record[cluster]"},
		diags: []string{"no node accepts writes: db1, the catalog's primary (generation 1), is stopped and cluster.hcl declares db2; the switchover resumes"}},
	{name: "switchover_interrupted_after_promotion", mutate: func(c *config.Cluster, s *state.Cluster) {
		// Killed after db2's promotion: db1 is stopped with standby.signal,
		// the catalog still names it, db3 lost its upstream.
		c.Primary = "db2"
		end := s.Node("db1").CurrentLSN
		s.Node("db1").StandbySignal = true
		stop(s.Node("db1"))
		n := s.Node("db2")
		n.InRecovery, n.Upstream, n.Timeline = false, nil, 2
		n.History = []state.TimelineSwitch{{Parent: 1, SwitchLSN: end}}
		s.Node("db3").Upstream = &state.Upstream{Status: "waiting"}
	}, ids: []string{"slot.create[db2/db1]", "slot.create[db2/db3]", "standby.rejoin[db1]", "standby.follow[db3]", "catalog.record[cluster]"}},
	{name: "catalog_open_managed", mutate: func(c *config.Cluster, s *state.Cluster) {
		c.Catalog.PasswordFile = "/srv/pgha/.secrets/catalog"
		s.Catalog.Open = true
	}, ids: []string{"catalog.restart[redis]"}},
	{name: "catalog_open_external", mutate: func(c *config.Cluster, s *state.Cluster) {
		c.Catalog.Managed = false
		s.Catalog.Open, s.Catalog.Managed = true, false
	}, diags: []string{"the Redis catalog at 127.0.0.1:6390 accepts clients without a password"}},
	{name: "after_failover", mutate: func(c *config.Cluster, s *state.Cluster) {
		// db1 was killed and fenced, db2 promoted; cluster.hcl still says db1.
		afterFailover(c, s)
	}, ids: []string{"standby.rejoin[db1]", "switchover[db1]", "slot.create[db1/db2]", "slot.create[db1/db3]", "standby.rejoin[db2]", "standby.follow[db3]", "catalog.record[cluster]"},
		diags: []string{"db2 is the writable primary, cluster.hcl declares db1 (the catalog recorded db2 as primary"}},
	{name: "prevent_destroy_rejoins_by_rewind_only", mutate: func(c *config.Cluster, s *state.Cluster) {
		// The rejoin of a protected node never falls back to a re-clone.
		afterFailover(c, s)
		c.Node("db1").PreventDestroy = true
	}, ids: []string{"standby.rejoin[db1]", "switchover[db1]", "slot.create[db1/db2]", "slot.create[db1/db3]", "standby.rejoin[db2]", "standby.follow[db3]", "catalog.record[cluster]"},
		diags: []string{"db2 is the writable primary, cluster.hcl declares db1"}},
	{name: "declared_primary_without_data", mutate: func(c *config.Cluster, s *state.Cluster) {
		// After a failover, db1's data is gone (a re-clone interrupted
		// after its data was moved aside): cloned from db2, then switched.
		afterFailover(c, s)
		n := s.Node("db1")
		*n = state.Node{Name: "db1", Host: n.Host, Port: n.Port, DataDir: n.DataDir, DirExists: true, Error: "not running",
			Aside: []state.AsideDir{{Path: "/srv/pgha/data/db1.aside-20261124T020000Z", Bytes: 489 << 20, Owned: true}}}
		s.ObservedAt = tuesday
	}, ids: []string{"standby.clone[db1]", "node.start[db1]", "switchover[db1]", "slot.create[db1/db2]", "slot.create[db1/db3]", "standby.rejoin[db2]", "standby.follow[db3]", "catalog.record[cluster]"},
		diags: []string{"db2 is the writable primary, cluster.hcl declares db1", "db1 keeps 1 set-aside data directory (489.0 MiB)"}},
	{name: "declared_primary_cannot_be_cloned", mutate: func(c *config.Cluster, s *state.Cluster) {
		// Nothing true to record: db2 stays primary, the catalog says so already.
		afterFailover(c, s)
		n := s.Node("db1")
		*n = state.Node{Name: "db1", Host: n.Host, Port: n.Port, DataDir: n.DataDir, DirExists: true, Error: "not running",
			RuntimeError: "/srv/pgha/data/db1 holds files but no PostgreSQL cluster (no PG_VERSION)"}
	}, diags: []string{"db2 is the writable primary", "db1 has no data and cannot be cloned"}},
	{name: "aside_removed_when_healthy_and_old", mutate: func(c *config.Cluster, s *state.Cluster) {
		s.ObservedAt = tuesday
		s.Node("db2").Aside = []state.AsideDir{{Path: "/srv/pgha/data/db2.aside-20261122T010000Z", Bytes: 489 << 20, Owned: true},
			{Path: "/srv/pgha/data/db2.aside-20261122T020000Z", Bytes: 2 << 20}}
		s.Node("db3").Aside = []state.AsideDir{{Path: "/srv/pgha/data/db3.aside-20261124T010000Z", Bytes: 1 << 30, Owned: true}}
	}, ids: []string{"data.remove[db2.aside-20261122T010000Z]"}, diags: []string{"db2 keeps 1 set-aside data directory pgha did not make (2.0 MiB)", "db3 keeps 1 set-aside data directory (1.0 GiB)"}},
	{name: "aside_kept_while_not_streaming", mutate: func(c *config.Cluster, s *state.Cluster) {
		s.ObservedAt = tuesday
		stop(s.Node("db2"))
		s.Node("db1").Slots[0].Active = false
		s.Node("db2").Aside = []state.AsideDir{{Path: "/srv/pgha/data/db2.aside-20261122T010000Z", Bytes: 489 << 20, Owned: true}}
	}, ids: []string{"node.start[db2]"}, diags: []string{"db2 keeps 1 set-aside data directory (489.0 MiB)"}},
	{name: "aside_prevent_destroy_kept", mutate: func(c *config.Cluster, s *state.Cluster) {
		s.ObservedAt = tuesday
		c.Node("db2").PreventDestroy = true
		s.Node("db2").Aside = []state.AsideDir{{Path: "/srv/pgha/data/db2.before-restore-20261122T010000Z", Bytes: 489 << 20, Owned: true}}
	}, diags: []string{"db2 keeps 1 set-aside data directory (489.0 MiB)"}},
	{name: "former_primary_not_started_as_primary", mutate: func(c *config.Cluster, s *state.Cluster) {
		// A rejoin of db1 was interrupted (no standby.signal), and db2,
		// the recorded primary, is down too: db1 is not started as primary.
		afterFailover(c, s)
		s.Node("db1").StandbySignal = false
		stop(s.Node("db2"))
		s.Node("db3").Upstream.Status = "waiting"
	}, diags: []string{"declared primary db1 is a former primary waiting to rejoin, and no node accepts writes"}},
	{name: "standby_not_streaming_is_critical", mutate: func(c *config.Cluster, s *state.Cluster) {
		// Configured right, running, but its WAL receiver gets nowhere
		// (a refused password, say): nothing to plan, and not converged.
		s.Node("db2").Upstream = &state.Upstream{Status: "waiting"}
		s.Node("db1").Slots[0].Active = false
	}, diags: []string{"standby db2 is not streaming (WAL receiver waiting)"}},
	{name: "standby_of_another_system_recloned", mutate: func(c *config.Cluster, s *state.Cluster) {
		s.Node("db3").SystemID = "7322222222222222222"
		s.Node("db3").Upstream.Status = "waiting"
		s.Node("db1").Slots[1].Active = false
	}, ids: []string{"standby.rejoin[db3]"}},
	{name: "standby_of_another_system_prevent_destroy", mutate: func(c *config.Cluster, s *state.Cluster) {
		c.Node("db3").PreventDestroy = true
		s.Node("db3").SystemID = "7322222222222222222"
		s.Node("db3").Upstream.Status = "waiting"
		s.Node("db1").Slots[1].Active = false
	}, diags: []string{"db3 belongs to another cluster, and prevent_destroy keeps its data"}},
	{name: "docker_image_changed", mutate: func(c *config.Cluster, s *state.Cluster) {
		dockerize(c, s)
		c.Runtime.Docker.Image = "postgres:17.3"
	}, ids: []string{"node.replace[db1]", "node.replace[db2]", "node.replace[db3]"}},
	{name: "docker_container_removed", mutate: func(c *config.Cluster, s *state.Cluster) {
		dockerize(c, s)
		s.Node("db1").Slots[0].Active = false
		n := s.Node("db2")
		*n = state.Node{Name: "db2", Host: n.Host, Port: n.Port, DataDir: n.DataDir, DirExists: true, Initialized: true, StandbySignal: true, Error: "not running"}
	}, ids: []string{"node.start[db2]"}},
	{name: "backup_first_full", mutate: func(c *config.Cluster, s *state.Cluster) {
		withBackups(c, s, tuesday)
	}, ids: []string{"slot.create[db1/pgha_backup]", "backup.take[full]"}},
	{name: "backup_incremental_due", mutate: func(c *config.Cluster, s *state.Cluster) {
		withBackups(c, s, tuesday, bk("20261123T020500Z-full", "full", "", tuesday.AddDate(0, 0, -1)))
		s.Node("db1").Slots = append(s.Node("db1").Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
	}, ids: []string{"backup.take[incremental]"}},
	{name: "backup_slot_holds_wal", mutate: func(c *config.Cluster, s *state.Cluster) {
		withBackups(c, s, tuesday, bk("20261124T020500Z-full", "full", "", tuesday))
		p := s.Node("db1")
		p.CurrentLSN = 0x2_03000148
		p.Slots = append(p.Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
	}, diags: []string{"slot pgha_backup holds 8.0 GiB of WAL on db1 since 0/3000100"}},
	{name: "backup_pg17_needs_no_slot", mutate: func(c *config.Cluster, s *state.Cluster) {
		// PostgreSQL 17: incrementals are block-level; no slot holds WAL
		// for them, and one left from before is dropped.
		withBackups(c, s, tuesday, bk("20261123T020500Z-full", "full", "", tuesday.AddDate(0, 0, -1)))
		for _, n := range s.Nodes {
			n.ServerVersion = 170004
			if n.InRecovery {
				n.Slots = nil
			}
		}
		p := s.Node("db1")
		p.Slots = append(p.Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
	}, ids: []string{"slot.drop[db1/pgha_backup]", "backup.take[incremental]"}},
	{name: "backup_slot_lost", mutate: func(c *config.Cluster, s *state.Cluster) {
		withBackups(c, s, tuesday, bk("20261123T020500Z-full", "full", "", tuesday.AddDate(0, 0, -1)))
	}, ids: []string{"slot.create[db1/pgha_backup]", "backup.take[full]"}},
	{name: "backup_retention", mutate: func(c *config.Cluster, s *state.Cluster) {
		// Two weeks back a chain of three; last Monday a full; Tuesday now.
		old := tuesday.AddDate(0, 0, -8)
		withBackups(c, s, tuesday,
			bk("old-full", "full", "", old), bk("old-incr", "incremental", "old-full", old.AddDate(0, 0, 1)), bk("old-diff", "differential", "old-full", old.AddDate(0, 0, 2)),
			bk("new-full", "full", "", tuesday.AddDate(0, 0, -1)), bk("new-incr", "incremental", "new-full", tuesday))
		s.Node("db1").Slots = append(s.Node("db1").Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
	}, ids: []string{"backup.expire[old-full]"}},
	{name: "backup_catalog_drift", mutate: func(c *config.Cluster, s *state.Cluster) {
		full := bk("20261123T020500Z-full", "full", "", tuesday.AddDate(0, 0, -1))
		incr := bk("20261124T020500Z-incremental", "incremental", full.ID, tuesday)
		withBackups(c, s, tuesday, full, incr)
		s.Node("db1").Slots = append(s.Node("db1").Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
		gone := bk("20261116T020500Z-full", "full", "", tuesday.AddDate(0, 0, -8))
		s.Catalog.Backups = []state.Backup{full, gone} // the incremental was taken with Redis down
	}, ids: []string{"backup.record[20261124T020500Z-incremental]"}, diags: []string{"the catalog lists backup 20261116T020500Z-full, which the repository does not hold"}},
	{name: "backup_catalog_down", mutate: func(c *config.Cluster, s *state.Cluster) {
		withBackups(c, s, tuesday, bk("20261123T020500Z-full", "full", "", tuesday.AddDate(0, 0, -1)), bk("20261124T020500Z-incremental", "incremental", "20261123T020500Z-full", tuesday))
		s.Node("db1").Slots = append(s.Node("db1").Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
		s.Catalog.Reachable, s.Catalog.Record = false, nil
	}, ids: []string{"catalog.start[redis]", "backup.record[*]", "catalog.record[cluster]"}},
	{name: "backup_logical_no_chains", mutate: func(c *config.Cluster, s *state.Cluster) {
		// pg_dumpall has no incrementals: Tuesday's tick asks for nothing,
		// and no backup slot holds WAL back.
		withBackups(c, s, tuesday, bk("20261123T020500Z-full", "full", "", tuesday.AddDate(0, 0, -1)))
		c.Backup.Method = "logical"
		noStandbySlots(s)
	}},
	{name: "backup_logical_full_due", mutate: func(c *config.Cluster, s *state.Cluster) {
		withBackups(c, s, tuesday.AddDate(0, 0, 6), bk("20261123T020500Z-full", "full", "", tuesday.AddDate(0, 0, -1)))
		c.Backup.Method = "logical"
		noStandbySlots(s)
	}, ids: []string{"backup.take[full]"}},
	{name: "restored_primary_standby_diverged", mutate: func(c *config.Cluster, s *state.Cluster) {
		// pgha restore -node db1: db1 starts at the backup's moment on
		// timeline 2; db2 and db3 replayed timeline 1 past that point.
		p := s.Node("db1")
		p.Timeline, p.History, p.CurrentLSN = 2, []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x2000100}}, 0x2000200
		p.DatabaseBytes = 40 << 20
		p.Slots = nil
		p.Replicas = nil
		for _, name := range []string{"db2", "db3"} {
			n := s.Node(name)
			n.Upstream.Status = "waiting"
			n.ReplayLSN = 0x3000148
		}
		s.Node("db3").ReplayLSN = 0x2000080 // had not got that far: it can follow
	}, ids: []string{"slot.create[db1/db2]", "slot.create[db1/db3]", "standby.rejoin[db2]"}},
	{name: "lagging_standby_after_failover_follows", mutate: func(c *config.Cluster, s *state.Cluster) {
		// A streaming standby still on the old timeline is not diverged.
		p := s.Node("db1")
		p.Timeline, p.History = 2, []state.TimelineSwitch{{Parent: 1, SwitchLSN: 0x2000100}}
		s.Node("db2").ReplayLSN = 0x3000148
	}},
	{name: "tls_enable_existing", mutate: tlsFromScratch, ids: []string{
		"certificate.issue[ca]", "certificate.issue[db1]", "certificate.install[db1]", "certificate.issue[db2]", "certificate.install[db2]",
		"certificate.issue[db3]", "certificate.install[db3]", "certificate.issue[pgha]", "certificate.issue[redis]",
		"settings.update[db1]", "standby.follow[db2]", "settings.update[db2]", "standby.follow[db3]", "settings.update[db3]"}},
	{name: "tls_converged", mutate: withTLS},
	{name: "tls_renew_expiring", mutate: func(c *config.Cluster, s *state.Cluster) {
		withTLS(c, s)
		s.TLS.Certs["db2"].NotAfter = tlsNow.AddDate(0, 0, 12)
		s.TLS.Certs["redis"].NotAfter = tlsNow.AddDate(0, 0, 40) // not yet
	}, ids: []string{"certificate.issue[db2]", "certificate.install[db2]"}},
	{name: "tls_foreign_certificate_installed", mutate: func(c *config.Cluster, s *state.Cluster) {
		withTLS(c, s)
		s.Node("db3").TLSCert = "self-signed-fedcba9876543210"
		s.Node("db2").TLSCA = "another-ca-fedcba98765"
		stop(s.Node("db1")) // a stopped node gets its files when it starts
		s.Node("db1").TLSCert = ""
	}, ids: []string{"certificate.install[db2]", "certificate.install[db3]", "node.start[db1]"}},
	{name: "tls_store_renames_host", mutate: func(c *config.Cluster, s *state.Cluster) {
		withTLS(c, s)
		s.TLS.Certs["db1"].Hosts = []string{"127.0.0.1"}
		s.TLS.Certs["pgha"].Verified, s.TLS.Certs["pgha"].Problem = false, "not signed by the cluster CA: x509: certificate signed by unknown authority"
	}, ids: []string{"certificate.issue[db1]", "certificate.install[db1]", "certificate.issue[pgha]"}},
	{name: "tls_docker_names", mutate: func(c *config.Cluster, s *state.Cluster) {
		// On Docker a node is reached by its container name (peers) and
		// the published address (pgha); a certificate from before a
		// rename of the cluster's containers is renewed.
		dockerize(c, s)
		withTLS(c, s)
		s.TLS.Certs["db2"].Hosts = []string{"pgha-old-db2", "127.0.0.1", "localhost"}
	}, ids: []string{"certificate.issue[db2]", "certificate.install[db2]"}},
	{name: "tls_given_without_ca_key", mutate: func(c *config.Cluster, s *state.Cluster) {
		withTLS(c, s)
		s.TLS.CAKey = false
		delete(s.TLS.Certs, "db3")
	}, diags: []string{"db3 has no certificate, and /srv/pgha/data/tls has no ca.key to issue one"}},
	{name: "unknown_parameter", mutate: func(c *config.Cluster, s *state.Cluster) {
		c.Postgres.Parameters["shared_bufers"] = "1GB"
	}, diags: []string{`db1 does not know the parameter "shared_bufers"`}},
}

func TestBuild(t *testing.T) {
	for _, tc := range planCases {
		t.Run(tc.name, func(t *testing.T) {
			c := testCluster()
			start := converged
			if tc.start != nil {
				start = tc.start
			}
			s := start(c)
			if tc.mutate != nil {
				tc.mutate(c, s)
			}
			p := Build(c, s)
			var ids []string
			for _, a := range p.Actions {
				ids = append(ids, a.ID)
			}
			if strings.Join(ids, " ") != strings.Join(tc.ids, " ") {
				t.Errorf("actions:\n got  %v\n want %v", ids, tc.ids)
			}
			for _, want := range tc.diags {
				found := false
				for _, d := range p.Diagnostics {
					found = found || strings.Contains(d.Summary, want)
				}
				if !found {
					t.Errorf("no diagnostic %q in %+v", want, p.Diagnostics)
				}
			}
			if len(tc.diags) == 0 && len(p.Diagnostics) > 0 {
				t.Errorf("unexpected diagnostics: %+v", p.Diagnostics)
			}
			checkDependencies(t, p)
			var buf bytes.Buffer
			Text(&buf, p)
			js, err := JSON(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{"su-secret-1", "repl-secret-2"} {
				if strings.Contains(buf.String(), secret) || strings.Contains(string(js), secret) {
					t.Fatalf("plan output leaks a secret")
				}
			}
			golden(t, filepath.Join("testdata", tc.name+".txt"), buf.Bytes())
		})
	}
}

// checkDependencies asserts every dependency names an earlier action, so
// that executing in order is always valid.
func checkDependencies(t *testing.T, p *Plan) {
	t.Helper()
	seen := map[string]bool{}
	for _, a := range p.Actions {
		if seen[a.ID] {
			t.Errorf("duplicate action ID %s", a.ID)
		}
		for _, d := range a.DependsOn {
			if !seen[d] {
				t.Errorf("%s depends on %s, which does not come before it", a.ID, d)
			}
		}
		seen[a.ID] = true
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	testenv.Golden(t, path, got, *update)
}

func TestConvergedSaysNoChanges(t *testing.T) {
	c := testCluster()
	var buf bytes.Buffer
	Text(&buf, Build(c, converged(c)))
	if got := buf.String(); got != "No changes. The cluster matches the configuration.\n" {
		t.Fatalf("got %q", got)
	}
}

func TestSummaryLine(t *testing.T) {
	c := testCluster()
	var buf bytes.Buffer
	Text(&buf, Build(c, empty(c)))
	if !strings.Contains(buf.String(), "\nPlan: 12 to add, 0 to change, 0 to destroy.\n") {
		t.Fatalf("summary missing:\n%s", buf.String())
	}
}

func TestJSONFormat(t *testing.T) {
	c := testCluster()
	s := converged(c)
	stop(s.Node("db2"))
	b, err := JSON(Build(c, s))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		FormatVersion string `json:"format_version"`
		Actions       []struct {
			ID, Kind, Change, Node, Reason string
			DataLoss                       bool `json:"data_loss"`
		}
		Summary Summary
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.FormatVersion != FormatVersion || len(doc.Actions) != 1 || doc.Actions[0].Kind != "node.start" ||
		doc.Actions[0].Node != "db2" || doc.Actions[0].Change != "update" || doc.Summary.Change != 1 {
		t.Fatalf("unexpected JSON: %s", b)
	}
}

func TestSavedPlanRoundTripAndMoved(t *testing.T) {
	c := testCluster()
	s := converged(c)
	stop(s.Node("db2"))
	p := Build(c, s)
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := WriteFile(path, p); err != nil {
		t.Fatal(err)
	}
	back, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Fingerprint != p.Fingerprint || len(back.Actions) != 1 {
		t.Fatalf("round trip lost data: %+v", back)
	}
	s2 := converged(c)
	stop(s2.Node("db3"))
	now := Facts(c, s2)
	if Fingerprint(now) == back.Fingerprint {
		t.Fatal("fingerprint did not change after drift")
	}
	moved := strings.Join(Moved(back.Facts, now), "\n")
	for _, want := range []string{`node.db2.running: "false" → "true"`, `node.db3.running: "true" → "false"`} {
		if !strings.Contains(moved, want) {
			t.Errorf("moved lacks %q:\n%s", want, moved)
		}
	}
	// LSNs move with every write and must not make a plan stale.
	s3 := converged(c)
	stop(s3.Node("db2"))
	s3.Node("db1").CurrentLSN += 1 << 20
	if Fingerprint(Facts(c, s3)) != p.Fingerprint {
		t.Fatal("an LSN change made the plan stale")
	}
}

func TestDestroy(t *testing.T) {
	c := testCluster()
	p, err := BuildDestroy(c, converged(c), DestroyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range p.Actions {
		ids = append(ids, a.ID)
	}
	want := "node.stop[db2] node.destroy[db2] node.stop[db3] node.destroy[db3] node.stop[db1] node.destroy[db1] catalog.destroy[redis]"
	if strings.Join(ids, " ") != want {
		t.Fatalf("got %v", ids)
	}
	if !p.DataLoss() || p.Summary().Destroy != 7 {
		t.Fatalf("destroy must be data loss with 7 destroys: %+v", p.Summary())
	}
	checkDependencies(t, p)

	// What pgha did not make stays, and the plan says so.
	s := converged(c)
	s.Node("db2").DataForeign = "/srv/pgha/data/db2 carries no pgha.marker and no pgha.conf written by pgha"
	s.Catalog.DirExists, s.Catalog.DirForeign = true, "/srv/pgha/data/redis holds no redis.conf written by pgha"
	p, err = BuildDestroy(c, s, DestroyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids = nil
	for _, a := range p.Actions {
		ids = append(ids, a.ID)
	}
	if got, want := strings.Join(ids, " "), "node.stop[db2] node.stop[db3] node.destroy[db3] node.stop[db1] node.destroy[db1]"; got != want {
		t.Fatalf("destroy with foreign directories: %s, want %s", got, want)
	}
	checkDependencies(t, p)
	var diags []string
	for _, d := range p.Diagnostics {
		diags = append(diags, string(d.Severity)+": "+d.Summary+" ("+d.Detail+")")
	}
	if got, want := strings.Join(diags, "\n"), "warning: destroy leaves the data directory of db2: pgha did not make it (/srv/pgha/data/db2 carries no pgha.marker and no pgha.conf written by pgha)\n"+
		"warning: destroy leaves the catalog's directory: pgha did not make it (/srv/pgha/data/redis holds no redis.conf written by pgha)"; got != want {
		t.Fatalf("diagnostics:\n%s\nwant:\n%s", got, want)
	}

	c.Node("db1").PreventDestroy = true
	if _, err := BuildDestroy(c, converged(c), DestroyOptions{}); err == nil || !strings.Contains(err.Error(), "db1 has prevent_destroy") {
		t.Fatalf("prevent_destroy not honoured: %v", err)
	}
	var buf bytes.Buffer
	Text(&buf, mustDestroyEmpty(t, c))
	if !strings.HasPrefix(buf.String(), "No changes.") {
		t.Fatalf("destroying nothing: %s", buf.String())
	}
}

func TestDestroyDockerKeepsVolumes(t *testing.T) {
	c := testCluster()
	s := converged(c)
	dockerize(c, s)
	for _, n := range s.Nodes {
		n.DirExists = true
	}
	p, err := BuildDestroy(c, s, DestroyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.DataLoss() {
		t.Fatalf("a docker destroy without -delete-volumes discards data: %+v", p.Actions)
	}
	if p, err = BuildDestroy(c, s, DestroyOptions{DeleteVolumes: true}); err != nil {
		t.Fatal(err)
	}
	if !p.DataLoss() {
		t.Fatal("-delete-volumes is not marked as data loss")
	}
	// Containers gone, volumes kept: nothing left to do without -delete-volumes.
	for _, n := range s.Nodes {
		n.Container, n.Running = nil, false
	}
	s.Catalog.Reachable = false
	if p, err := BuildDestroy(c, s, DestroyOptions{}); err != nil || !p.Empty() {
		t.Fatalf("kept volumes are planned again: %+v", p.Actions)
	}
}

func mustDestroyEmpty(t *testing.T, c *config.Cluster) *Plan {
	c.Node("db1").PreventDestroy = false
	p, err := BuildDestroy(c, empty(c), DestroyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFailover(t *testing.T) {
	c := testCluster()
	s := converged(c)
	stop(s.Node("db1"))
	s.Node("db2").ReceiveLSN = 0x3000148
	s.Node("db3").ReceiveLSN, s.Node("db3").ReplayLSN = 0x3000100, 0x3000100
	p, err := BuildFailover(c, s, FailoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range p.Actions {
		ids = append(ids, a.ID)
	}
	want := "node.fence[db1] failover[db2] slot.create[db2/db1] slot.create[db2/db3] standby.follow[db3] catalog.record[cluster]"
	if strings.Join(ids, " ") != want {
		t.Fatalf("failover plan: %v", ids)
	}
	checkDependencies(t, p)
	var buf bytes.Buffer
	Text(&buf, p)
	golden(t, "testdata/failover.txt", buf.Bytes())
	rec := p.Actions[len(p.Actions)-1]
	if rec.After["generation"] != "2" || rec.After["rejoin"] != "db1" || rec.After["event"] != "failover" {
		t.Fatalf("record: %+v", rec.After)
	}

	// A candidate beyond maximum_lag is refused with the numbers, unless forced.
	c.Failover.MaximumLag = 16
	_, err = BuildFailover(c, s, FailoverOptions{To: "db3"})
	if err == nil || !strings.Contains(err.Error(), "db3 is 72 B behind, more than failover.maximum_lag (16 B)") {
		t.Fatalf("lagging candidate: %v", err)
	}
	if _, err := BuildFailover(c, s, FailoverOptions{To: "db3", Force: true}); err != nil {
		t.Fatalf("-force: %v", err)
	}
	// Equal WAL: the declared priority decides.
	s.Node("db3").ReceiveLSN, s.Node("db3").ReplayLSN = 0x3000148, 0x3000148
	c.Node("db3").Priority = 10
	p, err = BuildFailover(c, s, FailoverOptions{})
	if err != nil || p.Actions[1].ID != "failover[db3]" {
		t.Fatalf("priority not honoured: %v %v", err, p.Actions[1].ID)
	}
	// A healthy primary is not failed over without -force.
	if _, err := BuildFailover(c, converged(c), FailoverOptions{}); err == nil || !strings.Contains(err.Error(), "answers and accepts writes") {
		t.Fatalf("healthy primary: %v", err)
	}
}

func TestFailbackNoSwitchover(t *testing.T) {
	c := testCluster()
	s := converged(c)
	afterFailover(c, s)
	p := BuildWith(c, s, Options{NoSwitchover: true})
	var ids []string
	for _, a := range p.Actions {
		ids = append(ids, a.ID)
	}
	if strings.Join(ids, " ") != "standby.rejoin[db1] catalog.record[cluster]" {
		t.Fatalf("failback -no-switchover: %v", ids)
	}
	if p.Actions[0].Primary != "db2" || !p.Actions[0].DataLoss {
		t.Fatalf("rejoin: %+v", p.Actions[0])
	}
}

func TestSettingEqual(t *testing.T) {
	cases := []struct {
		desired, value, unit, vartype string
		want                          bool
	}{
		{"128MB", "16384", "8kB", "integer", true},
		{"256MB", "16384", "8kB", "integer", false},
		{"1GB", "1024", "MB", "integer", true},
		{"1024", "1024", "MB", "integer", true},
		{"30s", "30000", "ms", "integer", true},
		{"1min", "60", "s", "integer", true},
		{"-1", "-1", "kB", "integer", true},
		{"on", "on", "", "bool", true},
		{"true", "on", "", "bool", true},
		{"off", "on", "", "bool", false},
		{"Replica", "replica", "", "enum", true},
		{"127.0.0.1", "127.0.0.1", "", "string", true},
		{"", "", "", "string", true},
		{"0.5", "0.5", "", "real", true},
		{"garbage", "10", "MB", "integer", false},
	}
	for _, tc := range cases {
		if got := settingEqual(tc.desired, tc.value, tc.unit, tc.vartype); got != tc.want {
			t.Errorf("settingEqual(%q, %q %s %s) = %v, want %v", tc.desired, tc.value, tc.unit, tc.vartype, got, tc.want)
		}
	}
	if got := displaySetting("16384", "8kB"); got != "128MB" {
		t.Errorf("displaySetting = %q", got)
	}
}

// tuesday is 02:05 on the Tuesday of the week the backup cases replay.
var tuesday = time.Date(2026, 11, 24, 2, 5, 0, 0, time.UTC)

// withBackups gives the test cluster the default backup block, the
// repository's manifests (newest first, as observed) and the clock.
func withBackups(c *config.Cluster, s *state.Cluster, now time.Time, list ...state.Backup) {
	c.Backup = &config.Backup{Repository: "/srv/pgha/backups", Compression: "gzip", Method: "physical", Source: "primary",
		Schedule: config.DefaultSchedule, Retention: config.Retention{Days: 6}}
	s.ObservedAt = now
	slices.SortFunc(list, func(a, b state.Backup) int { return b.Started.Compare(a.Started) })
	s.Backups = list
	s.Catalog.Backups = list
	// Standbys keep the backup slot too (see standbyBackupSlot).
	for _, n := range s.Nodes {
		if n.InRecovery {
			n.Slots = append(n.Slots, state.Slot{Name: config.BackupSlot, Type: "physical", RestartLSN: 0x3000100})
		}
	}
}

// noStandbySlots is for logical backups, which keep no backup slot.
func noStandbySlots(s *state.Cluster) {
	for _, n := range s.Nodes {
		if n.InRecovery {
			n.Slots = nil
		}
	}
}

func bk(id, typ, parent string, at time.Time) state.Backup {
	root := parent
	if root == "" {
		root = id
	}
	return state.Backup{ID: id, Cluster: "demo", Type: typ, Parent: parent, Root: root, Started: at, Finished: at.Add(time.Minute),
		Status: "complete", Timeline: 1, StoredBytes: 10 << 20, DatabaseBytes: 40 << 20, Checksum: "sha256:" + id, StopLSN: "0/3000100"}
}
