package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/state"
)

const superPW = "local-Test-s3cret"

func newRuntime(t *testing.T) *Runtime {
	t.Helper()
	r, err := New(Options{RunAs: testenv.RunAs(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.BinDir(), "initdb")); err != nil {
		t.Fatalf("bin dir %s lacks initdb", r.BinDir())
	}
	return r
}

func settings(port int, extra map[string]string) map[string]string {
	s := map[string]string{"port": fmt.Sprint(port), "listen_addresses": "127.0.0.1", "unix_socket_directories": "",
		"wal_level": "replica", "max_wal_senders": "10", "fsync": "off"}
	for k, v := range extra {
		s[k] = v
	}
	return s
}

var hba = []string{"local all all peer", "host all all 127.0.0.1/32 scram-sha-256", "host replication replicator 127.0.0.1/32 scram-sha-256"}

func TestPrimaryAndStandby(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := newRuntime(t)
	root := testenv.Dir(t)
	ports := testenv.FreePorts(t, 2)
	primary, standby := filepath.Join(root, "data", "db1"), filepath.Join(root, "data", "db2")
	t.Cleanup(func() {
		_ = r.Stop(context.Background(), standby, "immediate")
		_ = r.Stop(context.Background(), primary, "immediate")
	})

	n := &state.Node{DataDir: primary}
	r.Observe(n)
	if n.DirExists || n.Running {
		t.Fatalf("fresh dir observed as %+v", n)
	}
	if err := r.CreateDataDir(primary); err != nil {
		t.Fatal(err)
	}
	if err := r.InitDB(ctx, primary, "postgres", superPW); err != nil {
		t.Fatal(err)
	}
	if err := r.Configure(primary, settings(ports[0], nil), hba); err != nil {
		t.Fatal(err)
	}
	if err := r.Configure(primary, settings(ports[0], nil), hba); err != nil {
		t.Fatal(err)
	}
	conf, _ := os.ReadFile(filepath.Join(primary, "postgresql.conf"))
	if strings.Count(string(conf), includeLine) != 1 {
		t.Fatalf("include line appears %d times", strings.Count(string(conf), includeLine))
	}
	log := filepath.Join(root, "data", "log", "db1.log")
	if err := r.Start(ctx, primary, log); err != nil {
		t.Fatal(err)
	}
	n = &state.Node{DataDir: primary}
	r.Observe(n)
	if !n.DirExists || !n.Initialized || !n.Running || n.PID == 0 || n.StandbySignal {
		t.Fatalf("running primary observed as %+v", n)
	}
	ep := postgres.Endpoint{Host: "127.0.0.1", Port: ports[0], User: "postgres", Password: superPW}
	var checksums string
	if err := postgresQuery(ctx, ep, "SHOW data_checksums", &checksums); err != nil || checksums != "on" {
		t.Fatalf("data_checksums %q: %v", checksums, err)
	}
	for _, f := range []string{"pgha.conf", "postgresql.conf", "pg_hba.conf"} {
		b, _ := os.ReadFile(filepath.Join(primary, f))
		if strings.Contains(string(b), superPW) {
			t.Fatalf("%s contains the password", f)
		}
	}

	// A standby cloned through a slot.
	if err := postgres.EnsureRole(ctx, ep, "replicator", "repl-pw"); err != nil {
		t.Fatal(err)
	}
	if err := postgres.CreateSlot(ctx, ep, "db2"); err != nil {
		t.Fatal(err)
	}
	pass := filepath.Join(root, "data", ".pgha", "pgpass")
	if err := r.WritePassfile(pass, []PassEntry{{User: "replicator", Password: "repl-pw"}}); err != nil {
		t.Fatal(err)
	}
	src := CloneSource{Host: "127.0.0.1", Port: ports[0], User: "replicator", Slot: "db2", Passfile: pass, AppName: "db2"}
	if err := r.Clone(ctx, standby, src); err != nil {
		t.Fatal(err)
	}
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=replicator application_name=db2 passfile=%s", ports[0], pass)
	if err := r.Configure(standby, settings(ports[1], map[string]string{"primary_conninfo": conninfo, "primary_slot_name": "db2"}), hba); err != nil {
		t.Fatal(err)
	}
	if err := r.SetStandby(standby, true); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, standby, filepath.Join(root, "data", "log", "db2.log")); err != nil {
		t.Fatal(err)
	}
	sep := postgres.Endpoint{Host: "127.0.0.1", Port: ports[1], User: "postgres", Password: superPW}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := postgres.WaitStreaming(wctx, sep); err != nil {
		t.Fatal(err)
	}
	sn := &state.Node{DataDir: standby}
	r.Observe(sn)
	postgres.Observe(ctx, sep, sn, nil)
	if !sn.StandbySignal || !sn.InRecovery || sn.Upstream == nil || sn.Upstream.Slot != "db2" || sn.Upstream.Port != ports[0] {
		t.Fatalf("standby observed as %+v upstream %+v", sn, sn.Upstream)
	}
	pn := &state.Node{}
	postgres.Observe(ctx, ep, pn, nil)
	if rep := pn.Replica("db2"); rep == nil || rep.State != "streaming" {
		t.Fatalf("primary's pg_stat_replication: %+v", pn.Replicas)
	}
	if sl := pn.Slot("db2"); sl == nil || !sl.Active {
		t.Fatalf("slot not active: %+v", pn.Slots)
	}

	// Cloning into a non-empty directory refuses and keeps the files.
	if err := r.Clone(ctx, primary, src); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("clone over data: %v", err)
	}
	if _, err := os.Stat(filepath.Join(primary, "PG_VERSION")); err != nil {
		t.Fatal("clone refusal touched the data")
	}
	// RemoveDataDir refuses while running.
	if err := r.RemoveDataDir(standby); err == nil {
		t.Fatal("removed a running node's data")
	}
	if err := r.Stop(ctx, standby, ""); err != nil {
		t.Fatal(err)
	}
	r.Observe(sn)
	if sn.Running {
		t.Fatal("stopped standby observed as running")
	}
	if err := r.Stop(ctx, standby, ""); err != nil {
		t.Fatalf("stopping a stopped node: %v", err)
	}
	if err := r.RemoveDataDir(standby); err != nil {
		t.Fatal(err)
	}
}

func postgresQuery(ctx context.Context, ep postgres.Endpoint, sql string, dst *string) error {
	n := &state.Node{}
	postgres.Observe(ctx, ep, n, nil)
	if !n.Reachable {
		return fmt.Errorf("%s", n.Error)
	}
	*dst = n.Settings[strings.TrimPrefix(sql, "SHOW ")].Value
	return nil
}

func TestStalePidFileIsNotRunning(t *testing.T) {
	r := newRuntime(t)
	dir := filepath.Join(testenv.Dir(t), "db")
	if err := r.CreateDataDir(dir); err != nil {
		t.Fatal(err)
	}
	// A live process that is not PostgreSQL: this test binary.
	os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(fmt.Sprintf("%d\n%s\n", os.Getpid(), dir)), 0o600)
	n := &state.Node{DataDir: dir}
	r.Observe(n)
	if n.Running || !n.Initialized {
		t.Fatalf("stale pid file observed as %+v", n)
	}
}

func TestUnreachableParentIsExplained(t *testing.T) {
	if testenv.RunAs(t) == "" {
		t.Fatal("this test needs root (tests run as root here and in CI) to create a directory the postgres user cannot enter")
	}
	r := newRuntime(t)
	locked := filepath.Join(testenv.Dir(t), "locked")
	if err := os.Mkdir(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	err := r.CreateDataDir(filepath.Join(locked, "data", "db1"))
	if err == nil || !strings.Contains(err.Error(), "chmod o+x "+locked) {
		t.Fatalf("got %v", err)
	}
}

func TestManagedRedis(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := newRuntime(t)
	o := RedisOptions{Addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), Password: "redis-Pw-1", Dir: filepath.Join(testenv.Dir(t), "redis")}
	t.Cleanup(func() { _ = r.StopRedis(context.Background(), o) })
	if err := r.StartRedis(ctx, o); err != nil {
		t.Fatal(err)
	}
	pid, ok := r.RedisRunning(o)
	if !ok || pid == 0 {
		t.Fatal("redis not running after StartRedis")
	}
	if err := r.StartRedis(ctx, o); err != nil {
		t.Fatalf("second start: %v", err)
	}
	if p2, _ := r.RedisRunning(o); p2 != pid {
		t.Fatal("second start started another server")
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if strings.Contains(string(cmdline), o.Password) {
		t.Fatal("the password is on the command line")
	}
	if err := ping(ctx, RedisOptions{Addr: o.Addr, Password: "wrong"}); err == nil {
		t.Fatal("wrong password accepted")
	}
	conf, _ := os.ReadFile(filepath.Join(o.Dir, "redis.conf"))
	if !strings.Contains(string(conf), "appendonly yes") {
		t.Fatal("persistence is off")
	}
	if err := r.StopRedis(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.RedisRunning(o); ok {
		t.Fatal("still running after StopRedis")
	}
	if _, err := os.Stat(filepath.Join(o.Dir, "appendonlydir")); err != nil {
		if _, err2 := os.Stat(filepath.Join(o.Dir, "appendonly.aof")); err2 != nil {
			t.Fatalf("no appendonly file: %v / %v", err, err2)
		}
	}
}
