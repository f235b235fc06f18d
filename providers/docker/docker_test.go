package docker_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/internal/pgconf"
	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/providers/docker"
	"github.com/pgha/pgha/state"
)

// The superuser password has characters that a careless quoting would
// mangle; it must reach PostgreSQL intact through initdb's password file.
const superPW = `Sup3r:s'cret"\pw $HOME`

// newRuntime is a runtime for a cluster of its own (names, labels and
// network unique to the test) whose resources are all removed at the end.
func newRuntime(t *testing.T) *docker.Runtime {
	t.Helper()
	testenv.RequireDocker(t, testenv.DockerImage)
	name := fmt.Sprintf("dkt%d", time.Now().UnixNano()%1_000_000_000)
	rt, err := docker.New(docker.Options{Cluster: name, Prefix: name + "-", Network: name, Image: testenv.DockerImage, Bind: "127.0.0.1"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		inv, err := rt.Engine().Observe(ctx)
		if err == nil {
			for node := range inv.Containers {
				_ = rt.Engine().RemoveContainer(ctx, node)
			}
			for node := range inv.Volumes {
				_ = rt.Engine().RemoveVolume(ctx, node)
			}
		}
		_ = rt.Engine().RemoveNetwork(ctx)
		_ = rt.Close()
	})
	return rt
}

// sh runs a shell command in the node's container as root.
func sh(t *testing.T, rt *docker.Runtime, node, script string) string {
	t.Helper()
	out, err := rt.Engine().Exec(context.Background(), node, "root", nil, nil, "sh", "-c", script)
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return out
}

// observe is ObserveNodes for one declared node.
func observe(t *testing.T, rt *docker.Runtime, name string) *state.Node {
	t.Helper()
	n := &state.Node{Name: name}
	if _, err := rt.ObserveNodes(context.Background(), []*state.Node{n}, func(*state.Node) {}, docker.ObserveOptions{}); err != nil {
		t.Fatalf("ObserveNodes: %v", err)
	}
	return n
}

// TestNodeLifecycle drives one node the way apply does: initdb, marker,
// configure, start (a login with the initdb password through the
// published port), stop, pg_controldata, and what Observe sees between.
func TestNodeLifecycle(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	n := docker.Node{Name: "db1", Port: testenv.FreePort(t)}
	log := docker.VolumeDir + "/log/postgresql.log"

	if got := observe(t, rt, n.Name); got.DirExists || got.Initialized || got.Running {
		t.Fatalf("before CreateNode: %+v", got)
	}
	if err := rt.InitDB(ctx, n, "postgres", superPW); err != nil {
		t.Fatalf("InitDB: %v", err)
	}
	if out := sh(t, rt, n.Name, "ls -A "+docker.VolumeDir); strings.Contains(out, "pwfile") {
		t.Errorf("initdb's password file was left in the volume: %s", out)
	}
	if err := rt.InitDB(ctx, n, "postgres", superPW); err == nil {
		t.Error("a second InitDB over an initialised data directory succeeded")
	}
	if err := rt.WriteMarker(ctx, n, docker.Marker{Cluster: "x\ny", Node: n.Name}); err == nil {
		t.Error("a marker with a line break in a name was written")
	}
	if err := rt.WriteMarker(ctx, n, docker.Marker{Cluster: "other", Node: n.Name}); err != nil {
		t.Fatalf("WriteMarker: %v", err)
	}
	if err := rt.CheckOwned(ctx, n, docker.PGData); err == nil || !strings.Contains(err.Error(), "another cluster") {
		t.Errorf("CheckOwned of another cluster's data directory: %v", err)
	}
	// The runtime's cluster is the one its Options name.
	if err := rt.WriteMarker(ctx, n, docker.Marker{Cluster: clusterOf(rt), Node: n.Name}); err != nil {
		t.Fatalf("WriteMarker: %v", err)
	}
	if err := rt.CheckOwned(ctx, n, docker.PGData); err != nil {
		t.Errorf("CheckOwned of its own data directory: %v", err)
	}
	settings := map[string]string{"listen_addresses": "*", "port": "5432", "cluster_name": "db1"}
	hba := []string{"local all all peer", "host all all all scram-sha-256"}
	if err := rt.Configure(ctx, n, settings, hba); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := rt.Configure(ctx, n, settings, hba); err != nil {
		t.Fatalf("Configure again: %v", err)
	}
	if c := sh(t, rt, n.Name, "grep -c \"^"+pgconf.IncludeLine+"$\" "+docker.PGData+"/postgresql.conf"); strings.TrimSpace(c) != "1" {
		t.Errorf("postgresql.conf includes pgha.conf %s times after two Configure calls", strings.TrimSpace(c))
	}
	if err := rt.Start(ctx, n, log); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if running, err := rt.Running(ctx, n); err != nil || !running {
		t.Fatalf("Running after Start: %v, %v", running, err)
	}
	if err := rt.Start(ctx, n, log); err != nil {
		t.Fatalf("Start of a running server: %v", err)
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=10", n.Port))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = superPW
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("log in with the initdb password through the published port: %v", err)
	}
	var name, checksums string
	if err := conn.QueryRow(ctx, "SELECT current_setting('cluster_name'), current_setting('data_checksums')").Scan(&name, &checksums); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if name != "db1" || checksums != "on" {
		t.Errorf("cluster_name %q (pgha.conf not read?), data_checksums %q (pg_rewind needs them)", name, checksums)
	}
	if got := observe(t, rt, n.Name); !got.DirExists || !got.Initialized || !got.Running || got.StandbySignal || got.RuntimeError != "" || got.PMStatus != pgdata.PMReady {
		t.Errorf("Observe of a running primary: %+v", got)
	}
	if err := rt.Stop(ctx, n, "fast"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if running, err := rt.Running(ctx, n); err != nil || running {
		t.Fatalf("Running after Stop: %v, %v", running, err)
	}
	if err := rt.Stop(ctx, n, ""); err != nil {
		t.Fatalf("Stop of a stopped server: %v", err)
	}
	cd, err := rt.ControlData(ctx, n)
	if err != nil {
		t.Fatalf("ControlData: %v", err)
	}
	if cd["Database cluster state"] != "shut down" || cd["Data page checksum version"] == "0" || cd["Latest checkpoint location"] == "" {
		t.Errorf("ControlData of a cleanly stopped primary: state %q, checksums %q, checkpoint %q",
			cd["Database cluster state"], cd["Data page checksum version"], cd["Latest checkpoint location"])
	}
	if err := rt.SetStandby(ctx, n, true); err != nil {
		t.Fatal(err)
	}
	if got := observe(t, rt, n.Name); !got.Initialized || got.Running || !got.StandbySignal || got.Error != "not running" || got.PMStatus != "" {
		t.Errorf("Observe of a stopped standby: %+v", got)
	}
	// The container gone, its volume is looked into with a probe: a kept
	// volume is restarted, never re-cloned.
	if err := rt.Engine().RemoveContainer(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	if got := observe(t, rt, n.Name); !got.DirExists || !got.Initialized || got.Running || !got.StandbySignal || got.Container != nil {
		t.Errorf("Observe of a volume without its container: %+v", got)
	}
	if err := rt.CreateNode(ctx, n); err != nil {
		t.Fatalf("CreateNode over a kept volume: %v", err)
	}
	if cd, err := rt.ControlData(ctx, n); err != nil || cd["Database cluster state"] != "shut down" {
		t.Errorf("the data directory did not survive its container: %v %v", cd["Database cluster state"], err)
	}
}

// clusterOf is the cluster name a runtime made by newRuntime carries (its
// network's name).
func clusterOf(rt *docker.Runtime) string {
	return strings.TrimSuffix(rt.Name(""), "-")
}

// TestAside: MoveAside keeps everything under a set-aside name in the
// volume; RemoveAside deletes only what is named as set aside and was
// made for this cluster, and lists nothing it refused to delete as owned.
func TestAside(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	n := docker.Node{Name: "db1", Port: testenv.FreePort(t)}
	if err := rt.InitDB(ctx, n, "postgres", superPW); err != nil {
		t.Fatalf("InitDB: %v", err)
	}
	if err := rt.WriteMarker(ctx, n, docker.Marker{Cluster: clusterOf(rt), Node: n.Name}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, n, docker.VolumeDir+"/log/postgresql.log"); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.MoveAside(ctx, n, "20260101T000000Z"); err == nil || !strings.Contains(err.Error(), "running") {
		t.Fatalf("MoveAside of a running server's data directory: %v", err)
	}
	if err := rt.Stop(ctx, n, "fast"); err != nil {
		t.Fatal(err)
	}
	aside, err := rt.MoveAside(ctx, n, "20260101T000000Z")
	if err != nil {
		t.Fatalf("MoveAside: %v", err)
	}
	if want := pgdata.AsidePath(docker.PGData, "20260101T000000Z"); aside != want {
		t.Fatalf("MoveAside put the data in %q, want %q", aside, want)
	}
	if out := sh(t, rt, n.Name, "ls -A "+docker.PGData+"; stat -c '%U %a' "+docker.PGData+"; cat "+aside+"/PG_VERSION"); out != "postgres 700\n17\n" {
		t.Errorf("after MoveAside, data directory and aside: %q", out)
	}
	if _, err := rt.MoveAside(ctx, n, "20260101T000000Z"); err != nil {
		t.Errorf("MoveAside of an empty data directory: %v", err)
	}
	if again, err := rt.MoveAside(ctx, n, "20260101T000001Z"); err != nil || again != "" {
		t.Errorf("MoveAside of an empty data directory moved %q: %v", again, err)
	}

	// Not named as set aside: refused before anything is looked at.
	for _, p := range []string{docker.PGData, docker.VolumeDir, "/etc", docker.PGData + ".aside-x/../data", docker.PGData + ".aside-", docker.PGData + "x.aside-1"} {
		if err := rt.RemoveAside(ctx, n, p); err == nil || !strings.Contains(err.Error(), "not a set-aside data directory") {
			t.Errorf("RemoveAside(%s): %v", p, err)
		}
	}
	if out := sh(t, rt, n.Name, "ls /etc/passwd "+docker.VolumeDir+"/log"); !strings.Contains(out, "passwd") {
		t.Fatalf("something was removed: %s", out)
	}
	// Named as set aside but not this cluster's: kept.
	foreign := docker.PGData + ".aside-20250101T000000Z"
	unmarked := docker.PGData + ".before-restore-20250101T000000Z"
	link := docker.PGData + ".aside-20250202T000000Z"
	sh(t, rt, n.Name, fmt.Sprintf(`set -e
mkdir -p %[1]s %[2]s; echo 17 > %[1]s/PG_VERSION; echo 17 > %[2]s/PG_VERSION
printf 'cluster = prod\n' > %[1]s/%[3]s
ln -s %[4]s %[5]s`, foreign, unmarked, docker.MarkerFile, aside, link))
	for _, p := range []string{foreign, unmarked} {
		if err := rt.RemoveAside(ctx, n, p); err == nil {
			t.Errorf("RemoveAside(%s) of a directory pgha did not make for this cluster succeeded", p)
		}
	}
	if err := rt.RemoveAside(ctx, n, link); err == nil {
		t.Errorf("RemoveAside of a symlink succeeded")
	}
	found := map[string]bool{}
	for _, a := range rt.FindAside(ctx, n) {
		found[a.Path] = a.Owned
		if a.Path == aside && a.Bytes == 0 {
			t.Errorf("FindAside: %s has no size", a.Path)
		}
	}
	if len(found) != 3 || !found[aside] || found[foreign] || found[unmarked] {
		t.Errorf("FindAside (path → owned): %v; want the moved directory owned, the foreign and unmarked ones not, the symlink not listed", found)
	}
	if err := rt.RemoveAside(ctx, n, aside); err != nil {
		t.Fatalf("RemoveAside of its own set-aside directory: %v", err)
	}
	if out := sh(t, rt, n.Name, "ls -d "+docker.PGData+"*"); strings.Contains(out, aside+"\n") || !strings.Contains(out, foreign) || !strings.Contains(out, unmarked) {
		t.Errorf("after RemoveAside: %s", out)
	}
}

// TestCloneRewindBackup drives a primary and a standby in two
// containers: a clone through the node's slot that streams, a refused
// clone over data, a failed clone that leaves nothing behind, a base
// backup and a pg_dumpall streamed out, and pg_rewind of the old primary
// after a promotion. No password file outlives its command.
func TestCloneRewindBackup(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	const replPW = `repl:pa\ss`
	log := docker.VolumeDir + "/log/postgresql.log"
	pass := docker.VolumeDir + "/pgpass"
	ports := testenv.FreePorts(t, 3)
	db1, db2, db3 := docker.Node{Name: "db1", Port: ports[0]}, docker.Node{Name: "db2", Port: ports[1]}, docker.Node{Name: "db3", Port: ports[2]}
	hba := []string{"local all all peer", "host replication all all scram-sha-256", "host all all all scram-sha-256"}
	settings := func(n docker.Node, upstream string) map[string]string {
		s := map[string]string{"listen_addresses": "*", "port": "5432", "wal_level": "replica", "max_wal_senders": "5", "hot_standby": "on",
			"wal_keep_size": "256MB"} // pg_rewind reads db1's WAL back to the divergence
		if upstream != "" {
			s["primary_conninfo"] = fmt.Sprintf("host=%s port=5432 user=repl application_name=%s passfile=%s", rt.Name(upstream), n.Name, pass)
			s["primary_slot_name"] = n.Name
		}
		return s
	}
	connect := func(n docker.Node) *pgx.Conn {
		t.Helper()
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=10", n.Port))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Password = superPW
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("connect to %s: %v", n.Name, err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	if err := rt.InitDB(ctx, db1, "postgres", superPW); err != nil {
		t.Fatal(err)
	}
	if err := rt.Configure(ctx, db1, settings(db1, ""), hba); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, db1, log); err != nil {
		t.Fatal(err)
	}
	c1 := connect(db1)
	for _, q := range []string{`CREATE ROLE repl REPLICATION LOGIN PASSWORD 'repl:pa\ss'`, "SELECT pg_create_physical_replication_slot('db2')",
		"CREATE TABLE t (v text)", "INSERT INTO t VALUES ('before the clone')"} {
		if _, err := c1.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, n := range []docker.Node{db1, db2, db3} {
		if err := rt.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := rt.WritePassfile(ctx, n, pass, []docker.PassEntry{{User: "repl", Password: replPW}}); err != nil {
			t.Fatal(err)
		}
	}
	src := docker.CloneSource{Host: rt.Name("db1"), Port: docker.Port, User: "repl", Slot: "db2", Passfile: pass}
	if err := rt.Clone(ctx, db2, src); err != nil {
		t.Fatalf("Clone: %v", err)
	}
	if err := rt.Clone(ctx, db2, src); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Clone over a data directory: %v", err)
	}
	bad := src
	bad.Host, bad.Slot = "nowhere.invalid", ""
	if err := rt.Clone(ctx, db3, bad); err == nil {
		t.Error("Clone from a host that does not exist succeeded")
	}
	if out := sh(t, rt, "db3", "ls -A "+docker.PGData); out != "" {
		t.Errorf("a failed clone left %q behind", out)
	}
	if err := rt.Configure(ctx, db2, settings(db2, "db1"), hba); err != nil {
		t.Fatal(err)
	}
	if err := rt.SetStandby(ctx, db2, true); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, db2, log); err != nil {
		t.Fatal(err)
	}
	repl := ""
	for i := 0; i < 100 && repl != "streaming"; i++ {
		_ = c1.QueryRow(ctx, "SELECT coalesce(max(state), '') FROM pg_stat_replication WHERE application_name = 'db2'").Scan(&repl)
		time.Sleep(200 * time.Millisecond)
	}
	if repl != "streaming" {
		t.Fatalf("the clone does not stream from db1 (state %q)", repl)
	}

	var tarball strings.Builder
	report, err := rt.BaseBackup(ctx, db1, docker.CloneSource{Host: rt.Name("db1"), Port: docker.Port, User: "repl", Passfile: pass}, &tarball)
	if err != nil {
		t.Fatalf("BaseBackup: %v", err)
	}
	if !strings.Contains(tarball.String(), "PG_VERSION") || !strings.Contains(report, "write-ahead log end point") {
		t.Errorf("BaseBackup: %d bytes without PG_VERSION, or a report without the end point: %s", tarball.Len(), report)
	}
	var dump strings.Builder
	if err := rt.DumpAll(ctx, db1, docker.SQLSource{Host: rt.Name("db1"), Port: docker.Port, User: "postgres", Password: superPW}, &dump); err != nil {
		t.Fatalf("DumpAll: %v", err)
	}
	if !strings.Contains(dump.String(), "CREATE ROLE repl;") || !strings.Contains(dump.String(), "before the clone") {
		t.Errorf("pg_dumpall output lacks the role or the row (%d bytes)", dump.Len())
	}

	// db2 is promoted while db1 takes a write of its own: the timelines
	// diverge, and pg_rewind brings db1 back to db2's.
	c2 := connect(db2)
	if _, err := c2.Exec(ctx, "SELECT pg_promote()"); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Exec(ctx, "INSERT INTO t VALUES ('lost on the old primary')"); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	c1.Close(ctx)
	if err := rt.Stop(ctx, db1, "fast"); err != nil {
		t.Fatal(err)
	}
	out, err := rt.Rewind(ctx, db1, docker.SQLSource{Host: rt.Name("db2"), Port: docker.Port, User: "postgres", Password: superPW},
		&docker.Marker{Cluster: "rewound", Node: "db1"})
	if err != nil {
		t.Fatalf("Rewind: %v", err)
	}
	// pg_rewind copied db2's marker (if any); Rewind writes db1's in its exec.
	if m := sh(t, rt, "db1", "cat "+docker.PGData+"/"+docker.MarkerFile+"; stat -c %a "+docker.PGData+"/"+docker.MarkerFile); !strings.Contains(m, "cluster = rewound\nnode = db1\n") || !strings.HasSuffix(strings.TrimSpace(m), "600") {
		t.Errorf("db1's marker after the rewind (want cluster rewound, node db1, mode 600):\n%s", m)
	}
	if !strings.Contains(out, "servers diverged") {
		t.Errorf("pg_rewind's report does not say where the servers diverged: %s", out)
	}
	if cd, err := rt.ControlData(ctx, db1); err != nil || cd["Min recovery ending loc's timeline"] != "2" {
		t.Errorf("db1 after the rewind must recover to db2's timeline 2: %q, %v", cd["Min recovery ending loc's timeline"], err)
	}
	for _, n := range []string{"db1", "db2"} {
		if left := sh(t, rt, n, "ls -A "+docker.VolumeDir+" /var/lib/postgresql"); strings.Contains(left, "rewind.pgpass") || strings.Contains(left, "superuser") || strings.Contains(left, "pwfile") {
			t.Errorf("a password file outlived its command in %s: %s", n, left)
		}
	}
}

// TestObserveStoppedQuick: the watcher's quick observation of stopped
// containers (docker kill, as the failover bench crashes a node) says
// the same of them as the full one (data initialised or not,
// standby.signal, not running) without a probe container, and takes a
// fraction of its time. It prints both timings (3 rounds each).
func TestObserveStoppedQuick(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	db1, db2 := docker.Node{Name: "db1", Port: testenv.FreePort(t)}, docker.Node{Name: "db2", Port: testenv.FreePort(t)}
	if err := rt.InitDB(ctx, db1, "postgres", superPW); err != nil {
		t.Fatalf("InitDB: %v", err)
	}
	if err := rt.SetStandby(ctx, db1, true); err != nil {
		t.Fatal(err)
	}
	if err := rt.CreateNode(ctx, db2); err != nil { // a volume, no data
		t.Fatal(err)
	}
	for _, n := range []string{"db1", "db2"} {
		if out, err := exec.Command("docker", "kill", rt.Name(n)).CombinedOutput(); err != nil {
			t.Fatalf("docker kill: %v %s", err, out)
		}
	}
	observeAll := func(quick bool) ([]*state.Node, time.Duration) {
		nodes := []*state.Node{{Name: "db1"}, {Name: "db2"}}
		t0 := time.Now()
		if _, err := rt.ObserveNodes(ctx, nodes, func(*state.Node) {}, docker.ObserveOptions{Quick: quick}); err != nil {
			t.Fatalf("ObserveNodes: %v", err)
		}
		return nodes, time.Since(t0)
	}
	facts := func(n *state.Node) string {
		return fmt.Sprintf("dir=%t initialized=%t standby=%t running=%t container=%t error=%q runtime_error=%q",
			n.DirExists, n.Initialized, n.StandbySignal, n.Running, n.Container != nil && !n.Container.Running, n.Error, n.RuntimeError)
	}
	want := map[string]string{
		"db1": `dir=true initialized=true standby=true running=false container=true error="not running" runtime_error=""`,
		"db2": `dir=true initialized=false standby=false running=false container=true error="not running" runtime_error=""`,
	}
	var full, quick []time.Duration
	for range 3 {
		for _, q := range []bool{false, true} {
			nodes, took := observeAll(q)
			for _, n := range nodes {
				if got := facts(n); got != want[n.Name] {
					t.Errorf("quick=%t, %s: %s\nwant %s", q, n.Name, got, want[n.Name])
				}
			}
			if q {
				quick = append(quick, took)
			} else {
				full = append(full, took)
			}
		}
	}
	slices.Sort(full)
	slices.Sort(quick)
	t.Logf("observation of 2 stopped containers: full (probe containers) %v, quick (archive API) %v", full, quick)
	if quick[1] >= full[1]/2 {
		t.Errorf("the quick observation (median %s) is not even twice as fast as the full one (%s)", quick[1], full[1])
	}
}

// TestStopImmediatePaused: an immediate stop of a server whose processes
// are all stopped by SIGSTOP (a frozen primary being fenced) kills the
// postmaster's whole process group at once, without waiting for the
// SIGQUIT it cannot act on: no backend of it is left, and it takes well
// under the 3 s SIGQUIT is given. A running server stops the same way.
// Stop of a stopped server, or with no container, is no error.
func TestStopImmediatePaused(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	n := docker.Node{Name: "db1", Port: testenv.FreePort(t)}
	log := docker.VolumeDir + "/log/postgresql.log"
	if err := rt.InitDB(ctx, n, "postgres", superPW); err != nil {
		t.Fatalf("InitDB: %v", err)
	}
	if err := rt.Configure(ctx, n, map[string]string{"listen_addresses": "*", "port": "5432"}, []string{"local all all peer"}); err != nil {
		t.Fatal(err)
	}
	// The postmaster and its children (each leads a process group of
	// its own), as pid:state.
	group := func() string {
		return strings.TrimSpace(sh(t, rt, n.Name, `p=$(head -n 1 `+docker.PGData+`/postmaster.pid 2>/dev/null); [ -n "$p" ] || exit 0
ps -eo pid=,ppid=,stat= | awk -v g="$p" '($1 == g || $2 == g) && $3 !~ /^Z/ { print $1 ":" $3 }'`))
	}
	for _, paused := range []bool{true, false} {
		if err := rt.Start(ctx, n, log); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if g := group(); strings.Count(g, "\n") < 3 {
			t.Fatalf("the postmaster's group has too few processes to be a server: %q\n%s", g, sh(t, rt, n.Name, "ps -eo pgid,pid,ppid,stat,args"))
		}
		if paused {
			// SIGSTOP to each, as a frozen host would.
			sh(t, rt, n.Name, `p=$(head -n 1 `+docker.PGData+`/postmaster.pid); kill -STOP $p $(ps -eo pid=,ppid= | awk -v g="$p" '$2 == g { print $1 }')`)
			if g := group(); strings.Count(g, ":T") < 4 {
				t.Fatalf("not paused: %q", g)
			}
		}
		t0 := time.Now()
		if err := rt.Stop(ctx, n, "immediate"); err != nil {
			t.Fatalf("Stop immediate (paused %v): %v", paused, err)
		}
		took := time.Since(t0)
		if g := group(); g != "" {
			t.Fatalf("processes of the postmaster's group left after an immediate stop (paused %v): %q", paused, g)
		}
		if running, err := rt.Running(ctx, n); err != nil || running {
			t.Fatalf("Running after an immediate stop: %v %v", running, err)
		}
		t.Logf("immediate stop, paused %v: %s", paused, took.Round(time.Millisecond))
		if paused && took > 2500*time.Millisecond {
			t.Errorf("the immediate stop of a paused server took %s: it waited for the SIGQUIT a stopped process cannot act on", took.Round(time.Millisecond))
		}
	}
	if err := rt.Stop(ctx, n, "immediate"); err != nil {
		t.Errorf("immediate stop of a stopped server: %v", err)
	}
	if err := rt.Engine().RemoveContainer(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	if err := rt.Stop(ctx, n, "immediate"); err != nil {
		t.Errorf("immediate stop without a container: %v", err)
	}
}

// TestWritePrivateFiles: several files written in one exec each get
// exactly their bytes (binary, line breaks, no final newline, empty),
// 0600 for the postgres user, their directory made 0700; ReadFiles reads
// them back.
func TestWritePrivateFiles(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	n := docker.Node{Name: "db1", Port: testenv.FreePort(t)}
	if err := rt.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	bin := make([]byte, 512)
	for i := range bin {
		bin[i] = byte(i * 7)
	}
	files := map[string][]byte{
		docker.VolumeDir + "/tls/a.key": []byte("line 1\nline 2 without newline"),
		docker.VolumeDir + "/tls/b.bin": bin,
		docker.VolumeDir + "/tls/c":     {},
		docker.VolumeDir + "/other/d":   []byte("\n\n3\n"),
	}
	for range 2 { // twice: over existing files
		if err := rt.WritePrivateFiles(ctx, n, files); err != nil {
			t.Fatalf("WritePrivateFiles: %v", err)
		}
	}
	var paths []string
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	got, err := rt.ReadFiles(ctx, n, paths...)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		if string(got[i]) != string(files[p]) {
			t.Errorf("%s: read %q, wrote %q", p, got[i], files[p])
		}
	}
	if out := sh(t, rt, n.Name, "stat -c '%U %a %n' "+docker.VolumeDir+"/tls "+docker.VolumeDir+"/tls/* "+docker.VolumeDir+"/other/d; ls -A "+docker.VolumeDir+"/tls"); strings.Count(out, "postgres 600") != 4 || !strings.Contains(out, "postgres 700 "+docker.VolumeDir+"/tls\n") || strings.Contains(out, ".tmp") {
		t.Errorf("owners and modes:\n%s", out)
	}
}

// TestStartFailureSaysWhy: a server that cannot start fails Start with
// the end of its log, where PostgreSQL says why.
func TestStartFailureSaysWhy(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	n := docker.Node{Name: "db1", Port: testenv.FreePort(t)}
	if err := rt.InitDB(ctx, n, "postgres", superPW); err != nil {
		t.Fatalf("InitDB: %v", err)
	}
	if err := rt.Configure(ctx, n, map[string]string{"port": "5432", "shared_buffers": "lots"}, []string{"local all all peer"}); err != nil {
		t.Fatal(err)
	}
	err := rt.Start(ctx, n, docker.VolumeDir+"/log/postgresql.log")
	if err == nil || !strings.Contains(err.Error(), "last lines of") || !strings.Contains(err.Error(), "shared_buffers") {
		t.Fatalf("Start with an invalid setting: %v", err)
	}
	if running, _ := rt.Running(ctx, n); running {
		t.Fatal("running after a failed start")
	}
}

// TestConfigureAndStart: the one-exec path of a node's start writes what
// WritePrivateFiles, Configure and SetStandby write (the include line
// once however often it runs), starts the server, leaves a running one
// running, and says why a start failed.
func TestConfigureAndStart(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	n := docker.Node{Name: "db1", Port: testenv.FreePort(t)}
	log := docker.VolumeDir + "/log/postgresql.log"
	if err := rt.InitDB(ctx, n, "postgres", superPW); err != nil {
		t.Fatalf("InitDB: %v", err)
	}
	spec := docker.StartSpec{LogFile: log, Files: map[string][]byte{docker.VolumeDir + "/tls/x.key": []byte("secret\n")},
		Settings: map[string]string{"listen_addresses": "*", "port": "5432", "cluster_name": "db1"},
		HBA:      []string{"local all all peer", "host all all all scram-sha-256"}, Standby: true}
	if err := rt.ConfigureAndStart(ctx, n, spec); err != nil {
		t.Fatalf("ConfigureAndStart: %v", err)
	}
	if running, err := rt.Running(ctx, n); err != nil || !running {
		t.Fatalf("Running after ConfigureAndStart: %v %v", running, err)
	}
	spec.Standby = false // a running server: files written, left running
	if err := rt.ConfigureAndStart(ctx, n, spec); err != nil {
		t.Fatalf("ConfigureAndStart of a running server: %v", err)
	}
	out := sh(t, rt, n.Name, `D=`+docker.PGData+`; grep -c "^`+pgconf.IncludeLine+`$" $D/postgresql.conf; ls $D/standby.signal 2>&1; stat -c '%U %a %n' `+docker.VolumeDir+`/tls/x.key $D/pgha.conf $D/pg_hba.conf; cat `+docker.VolumeDir+`/tls/x.key; grep -c cluster_name $D/pgha.conf`)
	for _, want := range []string{"1\n", "No such file", "postgres 600 " + docker.VolumeDir + "/tls/x.key", "postgres 600 " + docker.PGData + "/pgha.conf", "postgres 600 " + docker.PGData + "/pg_hba.conf", "secret\n1"} {
		if !strings.Contains(out, want) {
			t.Errorf("after ConfigureAndStart, want %q in:\n%s", want, out)
		}
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=10", n.Port))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = superPW
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	var recovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&recovery); err != nil || !recovery {
		t.Errorf("started with standby.signal, in recovery %v (%v)", recovery, err)
	}
	conn.Close(ctx)
	if err := rt.Stop(ctx, n, "fast"); err != nil {
		t.Fatal(err)
	}
	spec.Settings["shared_buffers"] = "lots"
	err = rt.ConfigureAndStart(ctx, n, spec)
	if err == nil || !strings.Contains(err.Error(), "last lines of") || !strings.Contains(err.Error(), "shared_buffers") {
		t.Fatalf("ConfigureAndStart with an invalid setting: %v", err)
	}
}
