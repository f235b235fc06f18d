package local_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/pgha/pgha/internal/proc"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/providers/local"
	"github.com/pgha/pgha/state"
)

// The superuser password has characters that a careless quoting would
// mangle; it must reach PostgreSQL intact and appear nowhere else.
const superPW = `Sup3r:s'cret"\pw`

// The replication password exercises the passfile's ':' and '\' escapes
// end to end: the clone and the standby authenticate with it.
const replPW = `repl:pa\ss`

func newRuntime(t *testing.T) *local.Runtime {
	t.Helper()
	r, err := local.New(local.Options{RunAs: testenv.RunAs(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// runAsIDs is the uid/gid files must belong to.
func runAsIDs(t *testing.T) (int, int) {
	t.Helper()
	name := testenv.RunAs(t)
	if name == "" {
		return os.Getuid(), os.Getgid()
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

func assertOwned(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := runAsIDs(t)
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
		t.Errorf("%s is owned by uid %d, want %d", path, st.Uid, uid)
	}
	if fi.Mode().Perm() != perm {
		t.Errorf("%s has mode %04o, want %04o", path, fi.Mode().Perm(), perm)
	}
}

func nodeSettings(port int, extra map[string]string) map[string]string {
	s := map[string]string{
		"port": strconv.Itoa(port), "listen_addresses": "127.0.0.1", "unix_socket_directories": "",
		"wal_level": "replica", "max_wal_senders": "10", "fsync": "off",
	}
	for k, v := range extra {
		s[k] = v
	}
	return s
}

var hba = []string{
	"local all all peer",
	"host all all 127.0.0.1/32 scram-sha-256",
	"host replication replicator 127.0.0.1/32 scram-sha-256",
}

func connect(t *testing.T, ctx context.Context, port int) *pgx.Conn {
	t.Helper()
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", superPW), Host: fmt.Sprintf("127.0.0.1:%d", port),
		Path: "/postgres", RawQuery: "sslmode=disable"}
	c, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("connect to port %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func observe(r *local.Runtime, dir string) *state.Node {
	n := &state.Node{DataDir: dir}
	r.Observe(n)
	return n
}

// session is the session id of pid (field 6 of /proc/<pid>/stat).
func session(t *testing.T, pid string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])[3]
}

func TestNewFindsBinDir(t *testing.T) {
	r := newRuntime(t)
	for _, b := range []string{"initdb", "pg_ctl", "pg_basebackup", "postgres"} {
		if _, err := os.Stat(filepath.Join(r.BinDir(), b)); err != nil {
			t.Errorf("bin dir %s lacks %s", r.BinDir(), b)
		}
	}
	if got, want := r.BinDir(), testenv.PGBinDir(t); got != want {
		t.Errorf("BinDir() = %s, testenv finds %s", got, want)
	}
	given, err := local.New(local.Options{BinDir: testenv.PGBinDir(t), RunAs: testenv.RunAs(t)})
	if err != nil || given.BinDir() != testenv.PGBinDir(t) {
		t.Errorf("New with BinDir: %v, %v", given, err)
	}
	if _, err := local.New(local.Options{BinDir: t.TempDir(), RunAs: testenv.RunAs(t)}); err == nil || !strings.Contains(err.Error(), "make setup") {
		t.Errorf("New with an empty BinDir: %v, want an error saying `make setup`", err)
	}
	if _, err := local.New(local.Options{RunAs: "pgha-no-such-user"}); err == nil || !strings.Contains(err.Error(), "pgha-no-such-user") {
		t.Errorf("New with an unknown user: %v", err)
	}
	if os.Geteuid() == 0 {
		if _, err := local.New(local.Options{RunAs: "root"}); err == nil || !strings.Contains(err.Error(), "refuses to run as root") {
			t.Errorf("New running servers as root: %v", err)
		}
	}
}

// TestPrimaryAndStandby walks two nodes through their life: create, init,
// configure, start, observe, clone a standby through a slot, restart,
// stop, remove. The steps share the servers because initdb is the slow part.
func TestPrimaryAndStandby(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newRuntime(t)
	root := testenv.Dir(t)
	ports := testenv.FreePorts(t, 2)
	primary, standby := filepath.Join(root, "data", "db1"), filepath.Join(root, "data", "db2")
	plog, slog := filepath.Join(root, "data", "log", "db1.log"), filepath.Join(root, "data", "log", "db2.log")
	t.Cleanup(func() {
		_ = r.Stop(context.Background(), standby, "immediate")
		_ = r.Stop(context.Background(), primary, "immediate")
	})

	if n := observe(r, primary); n.DirExists || n.Initialized || n.Running || n.RuntimeError != "" {
		t.Fatalf("missing dir observed as %+v", n)
	}
	if err := r.CreateDataDir(primary); err != nil {
		t.Fatal(err)
	}
	assertOwned(t, primary, 0o700)
	if n := observe(r, primary); !n.DirExists || n.Initialized || n.RuntimeError != "" {
		t.Fatalf("empty data dir observed as %+v", n)
	}
	if err := r.CreateDataDir(primary); err != nil {
		t.Fatalf("CreateDataDir on its own empty dir: %v", err)
	}
	if err := r.InitDB(ctx, primary, "postgres", superPW); err != nil {
		t.Fatal(err)
	}
	if matches, _ := filepath.Glob(filepath.Join(root, "data", ".pgha-secret-*")); len(matches) > 0 {
		t.Fatalf("InitDB left its password file behind: %v", matches)
	}
	for range 2 { // twice: Configure is idempotent
		if err := r.Configure(primary, nodeSettings(ports[0], nil), hba); err != nil {
			t.Fatal(err)
		}
	}
	conf, _ := os.ReadFile(filepath.Join(primary, "postgresql.conf"))
	if n := strings.Count(string(conf), "include_if_exists = 'pgha.conf'"); n != 1 || !strings.HasSuffix(string(conf), "include_if_exists = 'pgha.conf'\n") {
		t.Fatalf("postgresql.conf has the include %d times, last line %q", n, conf[strings.LastIndexByte(string(conf[:len(conf)-1]), '\n')+1:])
	}
	for _, f := range []string{"pgha.conf", "pg_hba.conf", "postgresql.conf"} {
		assertOwned(t, filepath.Join(primary, f), 0o600)
		if b, _ := os.ReadFile(filepath.Join(primary, f)); strings.Contains(string(b), superPW) {
			t.Errorf("%s contains the superuser password", f)
		}
	}

	if err := r.Start(ctx, primary, plog); err != nil {
		t.Fatal(err)
	}
	assertOwned(t, filepath.Dir(plog), 0o700)
	assertOwned(t, plog, 0o600)
	n := observe(r, primary)
	if !n.DirExists || !n.Initialized || !n.Running || n.PID == 0 || n.StandbySignal || n.RuntimeError != "" {
		t.Fatalf("running primary observed as %+v", n)
	}
	pid := n.PID
	if session(t, strconv.Itoa(pid)) == session(t, "self") {
		t.Error("the postmaster shares the test's session: it would get the terminal's signals")
	}
	if err := r.Start(ctx, primary, plog); err != nil {
		t.Fatalf("Start on a running node: %v", err)
	}
	if n := observe(r, primary); n.PID != pid {
		t.Fatalf("Start on a running node changed the pid %d → %d", pid, n.PID)
	}

	db := connect(t, ctx, ports[0])
	var checksums string
	if err := db.QueryRow(ctx, "SHOW data_checksums").Scan(&checksums); err != nil || checksums != "on" {
		t.Fatalf("data_checksums = %q, %v", checksums, err)
	}

	t.Run("clone a standby through a slot", func(t *testing.T) {
		lit := "'" + strings.ReplaceAll(replPW, "'", "''") + "'"
		if _, err := db.Exec(ctx, "CREATE ROLE replicator LOGIN REPLICATION PASSWORD "+lit); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, "SELECT pg_create_physical_replication_slot('db2')"); err != nil {
			t.Fatal(err)
		}
		pass := filepath.Join(root, "data", ".pgha", "pgpass")
		if err := r.WritePassfile(pass, []local.PassEntry{{User: "replicator", Password: replPW}}); err != nil {
			t.Fatal(err)
		}
		src := local.CloneSource{Host: "127.0.0.1", Port: ports[0], User: "replicator", Slot: "db2", Passfile: pass, AppName: "db2"}
		if err := r.Clone(ctx, standby, src); err != nil {
			t.Fatal(err)
		}
		assertOwned(t, standby, 0o700)
		if err := r.WriteMarker(standby, local.Marker{Cluster: "t", Node: "db2"}); err != nil {
			t.Fatal(err)
		}
		assertOwned(t, filepath.Join(standby, local.MarkerFile), 0o600)
		if m, ok, err := local.ReadMarker(standby); err != nil || !ok || m != (local.Marker{Cluster: "t", Node: "db2"}) {
			t.Fatalf("marker read back as %+v, %v, %v", m, ok, err)
		}
		conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=replicator application_name=db2 passfile=%s", ports[0], pass)
		if err := r.Configure(standby, nodeSettings(ports[1], map[string]string{"primary_conninfo": conninfo, "primary_slot_name": "db2"}), hba); err != nil {
			t.Fatal(err)
		}
		if err := r.SetStandby(standby, true); err != nil {
			t.Fatal(err)
		}
		assertOwned(t, filepath.Join(standby, "standby.signal"), 0o600)
		if err := r.Start(ctx, standby, slog); err != nil {
			t.Fatal(err)
		}
		if n := observe(r, standby); !n.Running || !n.StandbySignal || !n.Initialized || n.PID == 0 {
			t.Fatalf("standby observed as %+v", n)
		}
		sdb := connect(t, ctx, ports[1])
		var inRecovery bool
		if err := sdb.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
			t.Fatalf("pg_is_in_recovery() = %v, %v", inRecovery, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			var active bool
			var app string
			err := db.QueryRow(ctx, `SELECT s.active, coalesce(r.application_name, '') FROM pg_replication_slots s
				LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'db2'`).Scan(&active, &app)
			if err == nil && active && app == "db2" {
				break
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(slog)
				t.Fatalf("standby does not stream through slot db2 (active %v, application %q, %v); log:\n%s", active, app, err, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := r.RemoveDataDir(standby, "t"); err == nil || !strings.Contains(err.Error(), "running") {
			t.Fatalf("RemoveDataDir of a running node: %v", err)
		}
		if err := r.Clone(ctx, primary, src); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("Clone over a cluster: %v", err)
		}
	})

	t.Run("restart", func(t *testing.T) {
		if err := r.Restart(ctx, primary, plog); err != nil {
			t.Fatal(err)
		}
		if n := observe(r, primary); !n.Running || n.PID == pid || n.PID == 0 {
			t.Fatalf("after restart (old pid %d): %+v", pid, n)
		}
	})

	t.Run("stop and remove", func(t *testing.T) {
		if err := r.Stop(ctx, standby, ""); err != nil {
			t.Fatal(err)
		}
		if n := observe(r, standby); n.Running || n.PID != 0 || !n.Initialized {
			t.Fatalf("stopped standby observed as %+v", n)
		}
		if err := r.Stop(ctx, standby, "fast"); err != nil {
			t.Fatalf("Stop on a stopped node: %v", err)
		}
		if err := r.SetStandby(standby, false); err != nil {
			t.Fatal(err)
		}
		if n := observe(r, standby); n.StandbySignal {
			t.Fatal("standby.signal still observed after SetStandby(false)")
		}
		if err := r.RemoveDataDir(standby, "other"); err == nil || !strings.Contains(err.Error(), `belongs to cluster "t"`) {
			t.Fatalf("RemoveDataDir of another cluster's directory: %v", err)
		}
		if err := r.RemoveDataDir(standby, "t"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(standby); !os.IsNotExist(err) {
			t.Fatalf("data dir still there: %v", err)
		}
		if err := r.Stop(ctx, primary, "smart"); err != nil {
			t.Fatal(err)
		}
		if n := observe(r, primary); n.Running {
			t.Fatalf("stopped primary observed as %+v", n)
		}
	})
}

// fakeDataDir is a data directory with PG_VERSION and no server.
func fakeDataDir(t *testing.T, r *local.Runtime) string {
	t.Helper()
	dir := filepath.Join(testenv.Dir(t), "db")
	if err := r.CreateDataDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writePID(t *testing.T, dir string, pid int) {
	t.Helper()
	body := fmt.Sprintf("%d\n%s\n1700000000\n5432\n\n127.0.0.1\n  5432001  0\nready\n", pid, dir)
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestObserveStalePIDFile(t *testing.T) {
	r := newRuntime(t)
	dir := fakeDataDir(t, r)

	// A live process that is not PostgreSQL: this test binary.
	writePID(t, dir, os.Getpid())
	if n := observe(r, dir); n.Running || n.PID != 0 || !n.Initialized || !n.DirExists {
		t.Fatalf("pid file naming a live non-postgres process observed as %+v", n)
	}

	// A process that has exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	writePID(t, dir, dead.Process.Pid)
	if n := observe(r, dir); n.Running || n.RuntimeError != "" {
		t.Fatalf("pid file naming a dead process observed as %+v", n)
	}

	// A live process of the server's own user blocks PostgreSQL's start:
	// that is worth a RuntimeError.
	sleeper := testenv.Command(t, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	writePID(t, dir, sleeper.Process.Pid)
	if n := observe(r, dir); n.Running || !strings.Contains(n.RuntimeError, "stale") {
		t.Fatalf("pid file naming a live process of the server's user observed as %+v", n)
	}
	// Stop must not signal that process.
	if err := r.Stop(context.Background(), dir, "immediate"); err != nil {
		t.Fatalf("Stop with a stale pid file: %v", err)
	}
	if err := syscall.Kill(sleeper.Process.Pid, 0); err != nil {
		t.Fatalf("Stop signalled the process a stale pid file named: %v", err)
	}
}

func TestObserveSurprises(t *testing.T) {
	r := newRuntime(t)
	root := testenv.Dir(t)
	junk := filepath.Join(root, "junk")
	if err := os.Mkdir(junk, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(junk, "notes.txt"), []byte("mine"), 0o600)
	testenv.Chown(t, junk)
	if n := observe(r, junk); !n.DirExists || n.Initialized || !strings.Contains(n.RuntimeError, "PG_VERSION") {
		t.Fatalf("non-empty, non-PostgreSQL dir observed as %+v", n)
	}
	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o600)
	if n := observe(r, file); n.DirExists || n.RuntimeError == "" {
		t.Fatalf("a file as data dir observed as %+v", n)
	}
	if err := r.RemoveDataDir(junk, "t"); err == nil {
		t.Fatal("RemoveDataDir removed a directory that is not PostgreSQL's")
	}
	if err := r.CreateDataDir(junk); err == nil {
		t.Fatal("CreateDataDir took over a directory with files")
	}
}

func TestCreateDataDirUntraversableParent(t *testing.T) {
	// Tests run as root here and in CI: root can make a directory that the
	// postgres user cannot enter.
	if testenv.RunAs(t) == "" {
		t.Fatal("this test needs root (it builds a directory the postgres user cannot enter); run the tests as root, as CI does")
	}
	r := newRuntime(t)
	locked := filepath.Join(testenv.Dir(t), "locked")
	if err := os.Mkdir(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	err := r.CreateDataDir(filepath.Join(locked, "data", "db1"))
	if err == nil || !strings.Contains(err.Error(), "chmod o+x "+locked) || !strings.Contains(err.Error(), "cannot enter "+locked) {
		t.Fatalf("CreateDataDir under a 0700 root directory: %v", err)
	}
	if entries, _ := os.ReadDir(locked); len(entries) != 0 {
		t.Fatalf("CreateDataDir created %v before refusing", entries)
	}
}

func TestCloneRefusesNonEmptyDir(t *testing.T) {
	r := newRuntime(t)
	dir := filepath.Join(testenv.Dir(t), "db2")
	if err := r.CreateDataDir(dir); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(dir, "precious")
	os.WriteFile(keep, []byte("data"), 0o600)
	src := local.CloneSource{Host: "127.0.0.1", Port: testenv.FreePort(t), User: "replicator"}
	if err := r.Clone(context.Background(), dir, src); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Clone into a non-empty dir: %v", err)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "data" {
		t.Fatalf("Clone touched the files it refused: %q, %v", b, err)
	}
}

func TestCloneFailureCleansUp(t *testing.T) {
	r := newRuntime(t)
	dir := filepath.Join(testenv.Dir(t), "data", "db2")
	src := local.CloneSource{Host: "127.0.0.1", Port: testenv.FreePort(t), User: "replicator", AppName: "db2"}
	err := r.Clone(context.Background(), dir, src)
	if err == nil || !strings.Contains(err.Error(), "pg_basebackup: error") {
		t.Fatalf("Clone from a closed port: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a failed clone into a missing dir left it behind: %v", err)
	}
}

func TestInitDBErrors(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t)
	dir := filepath.Join(testenv.Dir(t), "db1")
	if err := r.CreateDataDir(dir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "stray"), nil, 0o600)
	err := r.InitDB(ctx, dir, "postgres", superPW)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("InitDB into a non-empty dir: %v (want initdb's own words)", err)
	}
	if strings.Contains(err.Error(), superPW) {
		t.Fatal("InitDB's error shows the password")
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".pgha-secret-*")); len(matches) > 0 {
		t.Fatalf("a failed InitDB left its password file behind: %v", matches)
	}
	err = r.InitDB(ctx, filepath.Join(filepath.Dir(dir), "db2"), "postgres", "two\nlines")
	if err == nil || strings.Contains(err.Error(), "two\nlines") {
		t.Fatalf("InitDB with a two-line password: %v", err)
	}
}

func TestConfigure(t *testing.T) {
	r := newRuntime(t)
	dir := fakeDataDir(t, r)
	pgconf := filepath.Join(dir, "postgresql.conf")
	os.WriteFile(pgconf, []byte("max_connections = 100\ninclude_if_exists='pgha.conf'\nshared_buffers = 128MB\n\n"), 0o600)
	settings := map[string]string{
		"port":              "5433",
		"primary_conninfo":  "host=h user=it's",
		"archive_command":   `copy C:\wal %p`,
		"primary_slot_name": "",
	}
	for range 3 {
		if err := r.Configure(dir, settings, hba); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(filepath.Join(dir, "pgha.conf"))
	want := "# managed by pgha; edit cluster.hcl instead\n" +
		"archive_command = 'copy C:\\\\wal %p'\n" +
		"port = '5433'\n" +
		"primary_conninfo = 'host=h user=it''s'\n" +
		"primary_slot_name = ''\n"
	if string(got) != want {
		t.Errorf("pgha.conf:\n%s\nwant:\n%s", got, want)
	}
	conf, _ := os.ReadFile(pgconf)
	if want := "max_connections = 100\nshared_buffers = 128MB\ninclude_if_exists = 'pgha.conf'\n"; string(conf) != want {
		t.Errorf("postgresql.conf:\n%s\nwant:\n%s", conf, want)
	}
	hbaText, _ := os.ReadFile(filepath.Join(dir, "pg_hba.conf"))
	if !strings.HasPrefix(string(hbaText), "# managed by pgha") || !strings.HasSuffix(string(hbaText), strings.Join(hba, "\n")+"\n") {
		t.Errorf("pg_hba.conf:\n%s", hbaText)
	}
	for _, f := range []string{"pgha.conf", "postgresql.conf", "pg_hba.conf"} {
		assertOwned(t, filepath.Join(dir, f), 0o600)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(matches) > 0 {
		t.Errorf("temporary files left: %v", matches)
	}
	if err := r.Configure(dir, map[string]string{"port = 1\nssl": "on"}, hba); err == nil {
		t.Error("Configure accepted a setting name with a line break")
	}
	if err := r.Configure(dir, map[string]string{"primary_conninfo": "a\nssl = on"}, hba); err == nil {
		t.Error("Configure accepted a value with a line break")
	}
	if err := r.Configure(filepath.Join(filepath.Dir(dir), "none"), settings, hba); err == nil {
		t.Error("Configure of a missing data dir succeeded")
	}
}

func TestWritePassfile(t *testing.T) {
	r := newRuntime(t)
	root := testenv.Dir(t)
	path := filepath.Join(root, "data", ".pgha", "pgpass")
	err := r.WritePassfile(path, []local.PassEntry{
		{User: "replicator", Password: replPW},
		{Host: "db:1", Port: 5432, Database: "postgres", User: `we\ird`, Password: "*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := "*:*:*:replicator:repl\\:pa\\\\ss\n" + "db\\:1:5432:postgres:we\\\\ird:*\n"
	if string(got) != want {
		t.Errorf("passfile:\n%s\nwant:\n%s", got, want)
	}
	assertOwned(t, path, 0o600)
	assertOwned(t, filepath.Dir(path), 0o700)
	err = r.WritePassfile(path, []local.PassEntry{{User: "u", Password: "secret\nline"}})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("WritePassfile with a line break in the password: %v", err)
	}
	shared := filepath.Join(root, "shared")
	os.Mkdir(shared, 0o777)
	os.Chmod(shared, 0o1777)
	if err := r.WritePassfile(filepath.Join(shared, "pgpass"), nil); err == nil {
		t.Error("WritePassfile into a world-writable directory succeeded")
	}
}

func TestManagedRedis(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := newRuntime(t)
	o := local.RedisOptions{Addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), Password: `redis "pw" with\spaces`,
		Dir: filepath.Join(testenv.Dir(t), "data", "redis")}
	t.Cleanup(func() { _ = r.StopRedis(context.Background(), o) })

	if _, ok := r.RedisRunning(o); ok {
		t.Fatal("RedisRunning before start")
	}
	if err := r.StartRedis(ctx, o); err != nil {
		t.Fatal(err)
	}
	pid, ok := r.RedisRunning(o)
	if !ok || pid == 0 {
		t.Fatal("RedisRunning is false after StartRedis")
	}
	assertOwned(t, o.Dir, 0o700)
	assertOwned(t, filepath.Join(o.Dir, "redis.conf"), 0o600)
	if fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		uid, _ := runAsIDs(t)
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
			t.Errorf("redis-server runs as uid %d, want %d", st.Uid, uid)
		}
	}
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmdline), "spaces") {
		t.Error("the password is on redis-server's command line")
	}
	if session(t, strconv.Itoa(pid)) == session(t, "self") {
		t.Error("redis-server shares the test's session")
	}
	if err := r.StartRedis(ctx, o); err != nil {
		t.Fatalf("StartRedis on a running server: %v", err)
	}
	if again, _ := r.RedisRunning(o); again != pid {
		t.Fatalf("StartRedis on a running server started another (%d → %d)", pid, again)
	}
	wrong := o
	wrong.Password = "not-the-password"
	if err := r.StartRedis(ctx, wrong); err == nil || strings.Contains(err.Error(), wrong.Password) {
		t.Errorf("StartRedis with a wrong password: %v", err)
	}

	// A write reaches the appendonly file.
	if err := redisSet(ctx, o.Addr, o.Password); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for aofSize(o.Dir) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no appendonly data after a write")
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := r.StopRedis(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.RedisRunning(o); ok {
		t.Fatal("RedisRunning after StopRedis")
	}
	if running(pid) {
		t.Fatal("redis-server still alive after StopRedis")
	}
	if err := r.StopRedis(ctx, o); err != nil {
		t.Fatalf("StopRedis on a stopped server: %v", err)
	}
}

func TestStartRedisRefusesTakenPort(t *testing.T) {
	other := testenv.StartRedis(t)
	r := newRuntime(t)
	o := local.RedisOptions{Addr: other.Addr, Dir: filepath.Join(testenv.Dir(t), "redis")}
	t.Cleanup(func() { _ = r.StopRedis(context.Background(), o) })
	if err := r.StartRedis(context.Background(), o); err == nil || !strings.Contains(err.Error(), "already accepts connections") {
		t.Fatalf("StartRedis on a port another server holds: %v", err)
	}
}

// aofSize is the bytes of appendonly data: Redis 7 keeps it in
// appendonlydir/, older versions in appendonly.aof.
func aofSize(dir string) int64 {
	var n int64
	files, _ := filepath.Glob(filepath.Join(dir, "appendonlydir", "*.incr.aof"))
	files = append(files, filepath.Join(dir, "appendonly.aof"))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// redisSet writes one key with a real client, as the catalog will.
func redisSet(ctx context.Context, addr, password string) error {
	c := goredis.NewClient(&goredis.Options{Addr: addr, Password: password})
	defer c.Close()
	return c.Set(ctx, "pgha:test", "written", 0).Err()
}

// running reports whether pid is alive and not a zombie: the daemonized
// redis-server's parent is init, which may reap it a moment later.
func running(pid int) bool {
	st, err := proc.Read(pid)
	return err == nil && !st.Exited()
}
