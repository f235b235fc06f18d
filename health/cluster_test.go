package health

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

func cluster(kind string) *config.Cluster {
	c := &config.Cluster{Name: "demo", Primary: "db1", Runtime: config.Runtime{Kind: kind, Docker: config.Docker{Prefix: "pgha-demo-"}}}
	for i, name := range []string{"db1", "db2", "db3"} {
		c.Nodes = append(c.Nodes, &config.Node{Name: name, Host: "127.0.0.1", Port: 5441 + i})
	}
	return c
}

func streaming(name, host string, port int, age time.Duration) *state.Node {
	return &state.Node{Name: name, Reachable: true, InRecovery: true, Running: true, Initialized: true,
		Upstream: &state.Upstream{Status: "streaming", Host: host, Port: port, LastMessageAge: age}}
}

func TestFromClusterLocal(t *testing.T) {
	cfg := cluster("local")
	s := &state.Cluster{Nodes: []*state.Node{
		{Name: "db1", Host: "127.0.0.1", Port: 5441, Reachable: true, Running: true, Initialized: true},
		streaming("db2", "127.0.0.1", 5441, 300*time.Millisecond),
		streaming("db3", "127.0.0.1", 5442, 100*time.Millisecond), // cascading from db2
	}}
	probe := errors.New("timeout")
	obs := FromCluster(cfg, s, "db1", probe)
	if obs.Primary != "db1" || !obs.Reachable || obs.ProcessDead || obs.Probe != probe {
		t.Fatalf("primary: %+v", obs)
	}
	want := []Standby{
		{Name: "db2", Reachable: true, Streaming: true, LastMessageAge: 300 * time.Millisecond},
		{Name: "db3", Reachable: true, Receiver: "streaming from 127.0.0.1:5442"},
	}
	if !slices.Equal(obs.Standbys, want) {
		t.Fatalf("standbys:\n got %+v\nwant %+v", obs.Standbys, want)
	}
}

func TestFromClusterDocker(t *testing.T) {
	cfg := cluster("docker")
	s := &state.Cluster{Nodes: []*state.Node{
		// The container stopped: the runtime answered, no postmaster.
		{Name: "db1", Host: "127.0.0.1", Port: 5441, Initialized: true, Error: "not running", Container: &state.Container{Name: "pgha-demo-db1"}},
		// Standbys name the primary by its container on the cluster network.
		streaming("db2", "pgha-demo-db1", config.DockerPort, 5*time.Second),
		{Name: "db3", Reachable: true, InRecovery: true, Upstream: &state.Upstream{Status: "waiting", Host: "pgha-demo-db1", Port: 5432}},
	}}
	obs := FromCluster(cfg, s, "db1", nil)
	if obs.Reachable || !obs.ProcessDead || obs.Error != "not running" {
		t.Fatalf("primary: %+v", obs)
	}
	want := []Standby{
		{Name: "db2", Reachable: true, Streaming: true, LastMessageAge: 5 * time.Second},
		{Name: "db3", Reachable: true, Receiver: "WAL receiver waiting"},
	}
	if !slices.Equal(obs.Standbys, want) {
		t.Fatalf("standbys:\n got %+v\nwant %+v", obs.Standbys, want)
	}
	v := New(Config{Threshold: 3, Interval: time.Second}).Update(obs)
	if v.Status != Lost || !v.ProcessDead || !slices.Equal(v.Confirmed, []string{"db2", "db3"}) {
		t.Fatalf("verdict: %+v", v)
	}
	// A stopped container is a dead process even when its volume was not
	// read (Initialized unknown); with no container and no data, nothing died.
	s.Nodes[0].Initialized = false
	if obs := FromCluster(cfg, s, "db1", nil); !obs.ProcessDead {
		t.Fatalf("stopped container, volume not read: %+v", obs)
	}
	s.Nodes[0].Container = nil
	if obs := FromCluster(cfg, s, "db1", nil); obs.ProcessDead {
		t.Fatalf("no container, no data: %+v", obs)
	}
}

// TestFromClusterProcessDead: only a runtime that answered without error,
// about initialised data, with PostgreSQL silent too, says the process is
// dead; and standbys that pgha cannot query, or that are not in
// recovery, neither confirm nor deny.
func TestFromClusterProcessDead(t *testing.T) {
	cfg := cluster("local")
	for _, c := range []struct {
		name string
		db1  state.Node
		dead bool
	}{
		{"no postmaster", state.Node{Initialized: true, Error: "connection refused"}, true},
		{"postmaster alive, silent (SIGSTOP)", state.Node{Initialized: true, Running: true, Error: "timeout"}, false},
		{"the runtime failed", state.Node{Initialized: true, RuntimeError: "permission denied", Error: "connection refused"}, false},
		{"no data", state.Node{Error: "connection refused"}, false},
		{"reachable", state.Node{Initialized: true, Reachable: true}, false},
	} {
		db1 := c.db1
		db1.Name = "db1"
		s := &state.Cluster{Nodes: []*state.Node{&db1,
			{Name: "db2", Error: "connection refused"},
			{Name: "db3", Reachable: true}, // a primary of its own
		}}
		obs := FromCluster(cfg, s, "db1", nil)
		if obs.ProcessDead != c.dead {
			t.Errorf("%s: ProcessDead %v", c.name, obs.ProcessDead)
		}
		if want := []Standby{{Name: "db2"}, {Name: "db3"}}; !slices.Equal(obs.Standbys, want) {
			t.Errorf("%s: standbys %+v", c.name, obs.Standbys)
		}
	}
}

// TestFromClusterInRecovery: the primary pgha holds, found in recovery, is
// a read-only failure: suspect, never lost.
func TestFromClusterInRecovery(t *testing.T) {
	cfg := cluster("local")
	s := &state.Cluster{Nodes: []*state.Node{
		{Name: "db1", Reachable: true, InRecovery: true, Running: true, Initialized: true},
		{Name: "db2", Reachable: true, InRecovery: true, Running: true, Initialized: true},
	}}
	d := New(Config{Threshold: 1, Interval: time.Second})
	for range 3 {
		v := d.Update(FromCluster(cfg, s, "db1", nil))
		if v.Status != Suspect || !v.ReadOnly || v.Reason != "db1 is read-only: it is in recovery (a standby) and takes no writes; "+
			"the primary answers and refuses writes by its own state, which failing over would not fix: left to a person" {
			t.Fatalf("primary in recovery: %+v", v)
		}
	}
}

func TestPrimaryOf(t *testing.T) {
	cfg := cluster("local")
	for _, c := range []struct {
		rec  *state.ClusterRecord
		want string
	}{
		{nil, "db1"},
		{&state.ClusterRecord{Primary: "db2"}, "db2"}, // after a failover
		{&state.ClusterRecord{Primary: "db9"}, "db1"}, // a node no longer declared
		{&state.ClusterRecord{Primary: ""}, "db1"},    // nothing recorded
	} {
		s := &state.Cluster{Catalog: state.Catalog{Record: c.rec}}
		if got := PrimaryOf(cfg, s); got != c.want {
			t.Errorf("record %+v: %q, want %q", c.rec, got, c.want)
		}
	}
}
