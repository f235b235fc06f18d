package plan

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// testCluster is the three-node cluster of the root cluster.hcl, built in
// Go for the tests that vary a plan's input in code (options, a field at
// a time); the golden plans are case files (cases_test.go).
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
		case "wal_recycle":
			s.VarType = "bool"
		case "wal_receiver_timeout":
			s.VarType, s.Unit, s.Value = "integer", "ms", "3000"
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
	// The record comes right after the promotion: clients are routed by
	// it, and the re-pointing of the others need not delay it.
	want := "node.fence[db1] failover[db2] catalog.record[cluster] slot.create[db2/db1] slot.create[db2/db3] standby.follow[db3]"
	if strings.Join(ids, " ") != want {
		t.Fatalf("failover plan: %v", ids)
	}
	checkDependencies(t, p)
	rec := p.Actions[2]
	if rec.After["generation"] != "2" || rec.After["rejoin"] != "db1" || rec.After["event"] != "failover" {
		t.Fatalf("record: %+v", rec.After)
	}
	if strings.Join(rec.DependsOn, " ") != "node.fence[db1] failover[db2]" {
		t.Fatalf("the record depends on %v, want the fence and the promotion", rec.DependsOn)
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

func bk(id, typ, parent string, at time.Time) state.Backup {
	root := parent
	if root == "" {
		root = id
	}
	return state.Backup{ID: id, Cluster: "demo", Type: typ, Parent: parent, Root: root, Started: at, Finished: at.Add(time.Minute),
		Status: "complete", Timeline: 1, StoredBytes: 10 << 20, DatabaseBytes: 40 << 20, Checksum: "sha256:" + id, StopLSN: "0/3000100"}
}

// TestDestroyEtcdAuthority: with authority "etcd" and no Redis, destroy
// removes the record from etcd, and only when etcd answers.
func TestDestroyEtcdAuthority(t *testing.T) {
	c := testCluster()
	s := converged(c)
	s.Catalog = state.Catalog{}
	c.Catalog = nil
	c.Authority = &config.Authority{Kind: "etcd", Endpoints: []string{"http://127.0.0.1:2379"}}
	s.Catalog.Record = &state.ClusterRecord{Name: c.Name, Primary: "db1", Generation: 4}
	s.Authority = &state.Authority{Kind: "etcd", Endpoints: c.Authority.Endpoints, Answering: 3, Reachable: true}
	p, err := BuildDestroy(c, s, DestroyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last := p.Actions[len(p.Actions)-1]
	if last.ID != "catalog.record[cluster]" || last.Change != Delete || !strings.Contains(last.Reason, "etcd") {
		t.Fatalf("last action %s %s: %s", last.ID, last.Change, last.Reason)
	}
	checkDependencies(t, p)
	s.Authority.Reachable = false
	if p, err = BuildDestroy(c, s, DestroyOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, a := range p.Actions {
		if a.Kind == CatalogRecord {
			t.Fatalf("a record removal planned while etcd has no majority: %s", a.ID)
		}
	}
}
