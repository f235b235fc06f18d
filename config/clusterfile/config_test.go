package clusterfile

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestMain fixes run_as's default so that golden files do not depend on
// whether the tests run as root.
func TestMain(m *testing.M) {
	runningAsRoot = func() bool { return true }
	os.Exit(m.Run())
}

// dump renders a decoded cluster machine-independently: the cluster
// file's directory becomes <dir>.
func dump(t *testing.T, c *config.Cluster) []byte {
	t.Helper()
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(bytes.ReplaceAll(b, []byte(c.Dir), []byte("<dir>")), '\n')
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	testenv.Golden(t, path, got, *update)
}

// Distinctive secret values: tests assert they appear in no output.
const (
	superSecret = "Super-From-Env-s3cret"
	replSecret  = "Repl-From-File-s3cret" // testdata/good/repl.secret
	redisSecret = "Redis-From-Env-s3cret"
)

var secrets = []string{superSecret, replSecret, redisSecret}

func setSecrets(t *testing.T) {
	t.Setenv("T_SUPER", superSecret)
	t.Setenv("T_REDIS", redisSecret)
	t.Setenv("PGHA_SUPERUSER_PASSWORD", superSecret)
	t.Setenv("PGHA_REPLICATION_PASSWORD", replSecret)
	t.Setenv("PGHA_REDIS_PASSWORD", redisSecret)
	unsetenv(t, "T_PORT")
	unsetenv(t, "PGHA_TEST_SURELY_UNSET")
	unsetenv(t, "PGHA_IMAGE")
	unsetenv(t, "PGHA_REDIS_IMAGE")
}

// unsetenv unsets a variable for one test, restoring it afterwards.
func unsetenv(t *testing.T, name string) {
	t.Setenv(name, "") // registers the restore
	os.Unsetenv(name)
}

func assertNoSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range secrets {
		if strings.Contains(s, secret) {
			t.Errorf("%s leaks a secret:\n%s", what, s)
		}
	}
}

func diagText(t *testing.T, r *Result) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteDiagnostics(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestGoodFiles decodes testdata/good/*.hcl and compares the model, as
// JSON, with the .golden file beside it.
func TestGoodFiles(t *testing.T) {
	setSecrets(t)
	files, _ := filepath.Glob("testdata/good/*.hcl")
	if len(files) < 2 {
		t.Fatal("no good files")
	}
	goldens := map[string]string{}
	for _, f := range files {
		goldens[f] = strings.TrimSuffix(f, ".hcl") + ".golden"
	}
	// The shipped examples are good files too, read where they live.
	goldens["../../examples/two-node/cluster.hcl"] = "testdata/good/example_two_node.golden"
	goldens["../../examples/docker/cluster.hcl"] = "testdata/good/example_docker.golden"
	goldens["../../examples/docker-remote/cluster.hcl"] = "testdata/good/example_docker_remote.golden"
	for f, g := range goldens {
		t.Run(f, func(t *testing.T) {
			r := Load(f)
			if r.Diags.HasErrors() || r.Cluster == nil {
				t.Fatalf("diagnostics:\n%s", diagText(t, r))
			}
			got := dump(t, r.Cluster)
			assertNoSecret(t, "dump", string(got))
			golden(t, g, got)
		})
	}
}

// TestBadFiles decodes testdata/bad/*.hcl, one per kind of mistake, and
// compares the printed diagnostics with the .golden file beside it.
func TestBadFiles(t *testing.T) {
	setSecrets(t)
	files, _ := filepath.Glob("testdata/bad/*.hcl")
	if len(files) < 12 {
		t.Fatalf("only %d bad files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := Load(f)
			if !r.Diags.HasErrors() || r.Cluster != nil {
				t.Fatal("no error for a bad file")
			}
			for _, d := range r.Diags {
				if d.Subject == nil {
					t.Errorf("diagnostic %q has no range", d.Summary)
				}
			}
			out := diagText(t, r)
			if !strings.Contains(out, "--> "+f+":") {
				t.Errorf("no file:line:col in:\n%s", out)
			}
			assertNoSecret(t, "diagnostics", out)
			assertNoSecret(t, "Diags.Error()", r.Diags.Error())
			golden(t, strings.TrimSuffix(f, ".hcl")+".golden", []byte(out))
		})
	}
}

func TestThreeNodeModel(t *testing.T) {
	setSecrets(t)
	r := Load("testdata/good/three_node.hcl")
	c := r.Cluster
	if c == nil {
		t.Fatalf("%v", r.Diags)
	}
	if c.Postgres.Password.Reveal() != superSecret || c.Replication.Password.Reveal() != replSecret || c.Catalog.Password.Reveal() != redisSecret {
		t.Fatal("secrets not decoded from env() and file()")
	}
	if c.Node("db2").Port != 5442 || c.Node("db2").Slot != "replication_slot" || !c.Node("db3").PreventDestroy {
		t.Fatalf("nodes: %+v %+v", c.Node("db2"), c.Node("db3"))
	}
	if got := c.Postgres.Parameters; got["max_wal_senders"] != "10" || got["hot_standby"] != "on" || got["random_page_cost"] != "1.1" {
		t.Fatalf("parameters: %v", got)
	}
	if !filepath.IsAbs(c.Runtime.DataDir) || filepath.Base(c.Runtime.DataDir) != "pgdata" || c.Node("db1").DataDir != filepath.Join(c.Runtime.DataDir, "db1") {
		t.Fatalf("data dir not resolved against the file: %s", c.Runtime.DataDir)
	}
	if c.Catalog.DataDir != filepath.Join(c.Runtime.DataDir, "redis") {
		t.Fatalf("catalog data dir: %s", c.Catalog.DataDir)
	}
	if c.Failover.MaximumLag != 32<<20 || c.Failover.CheckInterval.Milliseconds() != 500 {
		t.Fatalf("failover: %+v", c.Failover)
	}
	if c.PrimaryNode() != c.Nodes[0] || !strings.HasPrefix(c.Hash, "sha256:") || len(c.Hash) != len("sha256:")+64 {
		t.Fatalf("primary %v, hash %s", c.PrimaryNode(), c.Hash)
	}
	t.Setenv("T_PORT", "6000")
	if c := Load("testdata/good/three_node.hcl").Cluster; c == nil || c.Node("db2").Port != 6000 {
		t.Fatal("env() with a set variable not used for port")
	}
}

// TestDefaults decodes the smallest valid file and checks every default.
func TestDefaults(t *testing.T) {
	src := `cluster "min" {
  primary = "db1"
  postgres { password = "p" }
  replication { password = "r" }
  node "db1" { port = 5441 }
}`
	dir := t.TempDir()
	r := Parse([]byte(src), filepath.Join(dir, "cluster.hcl"))
	c := r.Cluster
	if c == nil {
		t.Fatalf("%v", r.Diags)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"superuser", c.Postgres.Superuser, "postgres"},
		{"runtime kind", c.Runtime.Kind, "local"},
		{"data_dir", c.Runtime.DataDir, filepath.Join(dir, "data")},
		{"bin_dir", c.Runtime.BinDir, ""},
		{"run_as", c.Runtime.RunAs, "postgres"},
		{"host", c.Nodes[0].Host, "127.0.0.1"},
		{"node data dir", c.Nodes[0].DataDir, filepath.Join(dir, "data", "db1")},
		{"replication user", c.Replication.User, "replicator"},
		{"automatic", c.Failover.Automatic, true},
		{"check_interval", c.Failover.CheckInterval.String(), "1s"},
		{"failure_threshold", c.Failover.FailureThreshold, 3},
		{"maximum_lag", c.Failover.MaximumLag, int64(16 << 20)},
		{"failback", c.Failover.Failback, "manual"},
		{"primary_crash", c.Failover.PrimaryCrash, "restart"},
		{"watch heal", c.Watch.Heal, true},
		{"watch rejoin", c.Watch.Rejoin, "rewind"},
		{"watch config", c.Watch.Config, "apply"},
		{"catalog", c.Catalog == nil, true},
		{"file", c.File, filepath.Join(dir, "cluster.hcl")},
		{"dir", c.Dir, dir},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.what, ch.got, ch.want)
		}
	}
	runningAsRoot = func() bool { return false }
	defer func() { runningAsRoot = func() bool { return true } }()
	if c := Parse([]byte(src), "cluster.hcl").Cluster; c == nil || c.Runtime.RunAs != "" {
		t.Errorf("run_as default when not root: %+v", c)
	}
}

// TestWatchPolicy decodes a file that turns every watch default around,
// so that a decoder ignoring an attribute fails here and not in a
// watcher that fails over against its operator's wish.
func TestWatchPolicy(t *testing.T) {
	r := Load("testdata/good/watch.hcl")
	c := r.Cluster
	if c == nil {
		t.Fatalf("%s", diagText(t, r))
	}
	want := config.Watch{Heal: false, Rejoin: "manual", Config: "plan"}
	if got := c.Watch; got.Heal != want.Heal || got.Rejoin != want.Rejoin || got.Config != want.Config {
		t.Errorf("watch = %+v, want %+v", got, want)
	}
	if c.Failover.Automatic || c.Failover.PrimaryCrash != "failover" || c.Failover.Failback != "automatic" {
		t.Errorf("failover = %+v", c.Failover)
	}
}

// TestAllErrorsInOnePass checks that decoding goes on past the first
// problem, through every block and into the checks across blocks.
func TestAllErrorsInOnePass(t *testing.T) {
	src := `cluster "x" {
  primary = "db9"
  postgres { password = "" }
  node "db1" { port = 0 }
  node "db2" {
    port = 5442
    slot = "A"
  }
  node "db2" { port = 5443 }
  replication { user = "not ok" }
  failover {
    check_interval    = "soon"
    maximum_lag       = "lots"
    failure_threshold = 0
    failback          = "never"
  }
  catalog "redis" { address = "127.0.0.1:5442" }
}`
	r := Parse([]byte(src), "many.hcl")
	want := []string{
		"Unknown primary", "Empty postgres password", "Invalid port", "Invalid slot name", "Duplicate node",
		"Missing replication password", "Invalid replication user", "Invalid duration", "Invalid size",
		"Invalid failure_threshold", "Invalid failback", "Catalog and node on one port",
	}
	var got []string
	for _, d := range r.Diags {
		got = append(got, d.Summary)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got, in order:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestMissingFile(t *testing.T) {
	r := Load("testdata/nope.hcl")
	if !r.Diags.HasErrors() || r.Cluster != nil {
		t.Fatalf("missing file: %v", r.Diags)
	}
	out := diagText(t, r)
	if !strings.Contains(out, "testdata/nope.hcl") || !strings.Contains(out, "-f FILE") {
		t.Fatalf("missing file diagnostic does not say which file or what to do:\n%s", out)
	}
}

func TestFormat(t *testing.T) {
	got := string(Format([]byte("cluster \"x\" {\nprimary=\"db1\"\n  node \"db1\" {\n port = 1\n}\n}\n")))
	want := "cluster \"x\" {\n  primary = \"db1\"\n  node \"db1\" {\n    port = 1\n  }\n}\n"
	if got != want {
		t.Fatalf("got\n%s", got)
	}
	// Every shipped cluster file is formatted: Format leaves it byte for byte.
	files, err := filepath.Glob("testdata/good/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../cluster.hcl", "../../examples/two-node/cluster.hcl", "../../examples/docker/cluster.hcl")
	if len(files) < 5 {
		t.Fatalf("only %d files to check: %v", len(files), files)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(src) == 0 || !bytes.Contains(src, []byte(`cluster "`)) {
			t.Fatalf("%s is not a cluster file", f)
		}
		if got := Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted; pgha fmt gives:\n%s", f, got)
		}
	}
}

// TestSnippetMultibyte checks that the caret row lines up after
// multi-byte characters and tabs.
func TestSnippetMultibyte(t *testing.T) {
	src := "cluster \"x\" { # é\n\tprimary = \"db1\"\n\tpostgres { password = \"p\" }\n\treplication { password = \"r\" }\n" +
		"\tnode \"db1\" { port = 5441 }\n\tfailover { failback = \"sométimes\" } # ü\n}\n"
	out := diagText(t, Parse([]byte(src), "m.hcl"))
	want := "Error: Invalid failback\n --> m.hcl:6:24\n  |\n6 | \tfailover { failback = \"sométimes\" } # ü\n  | \t                      ^^^^^^^^^^^\n"
	if !strings.HasPrefix(out, want) {
		t.Fatalf("got\n%s\nwant prefix\n%s", out, want)
	}
}

// TestRepositoryClusterFiles keeps the shipped cluster files in step with
// the schema: each decodes without a diagnostic.
func TestRepositoryClusterFiles(t *testing.T) {
	setSecrets(t)
	for _, f := range []string{"../../examples/two-node/cluster.hcl", "../../examples/docker/cluster.hcl"} {
		t.Run(f, func(t *testing.T) {
			r := Load(f)
			if r.Diags.HasErrors() || r.Cluster == nil {
				t.Fatalf("%s", diagText(t, r))
			}
			if len(r.Cluster.Nodes) < 2 {
				t.Errorf("%s declares %d nodes", f, len(r.Cluster.Nodes))
			}
		})
	}
}

// TestRootClusterFile decodes the default cluster.hcl as `make demo` uses
// it. Its passwords come from files `make secrets` creates, which a clean
// clone lacks, so the file is copied into a temporary directory beside
// secret files of its own, and the decoded cluster is checked value by
// value. Without them, a missing secret file is the only error.
func TestRootClusterFile(t *testing.T) {
	src, err := os.ReadFile("../../cluster.hcl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.hcl"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	r := Load(filepath.Join(dir, "cluster.hcl"))
	if r.Cluster != nil || !r.Diags.HasErrors() {
		t.Fatal("cluster.hcl decoded without its secret files")
	}
	for _, d := range r.Diags {
		if d.Summary != "File not found" {
			t.Errorf("without .secrets: %s", diagText(t, r))
			break
		}
	}

	secrets := map[string]string{"superuser": "root-super-s3cret", "replication": "root-repl-s3cret",
		"catalog": "root-catalog-s3cret", "redis": "root-redis-s3cret", "api": "root-api-s3cret"}
	if err := os.Mkdir(filepath.Join(dir, ".secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, v := range secrets {
		if err := os.WriteFile(filepath.Join(dir, ".secrets", name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r = Load(filepath.Join(dir, "cluster.hcl"))
	c := r.Cluster
	if c == nil || r.Diags.HasErrors() {
		t.Fatalf("%s", diagText(t, r))
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", c.Name, "demo"},
		{"primary", c.Primary, "db1"},
		{"superuser", c.Postgres.Superuser, "postgres"},
		{"superuser password", c.Postgres.Password.Reveal(), secrets["superuser"]},
		{"replication user", c.Replication.User, "replicator"},
		{"replication password", c.Replication.Password.Reveal(), secrets["replication"]},
		{"wal_keep_size", c.Postgres.Parameters["wal_keep_size"], "256MB"},
		{"max_connections", c.Postgres.Parameters["max_connections"], "100"},
		{"shared_buffers", c.Postgres.Parameters["shared_buffers"], "128MB"},
		{"runtime", c.Runtime.Kind, "local"},
		{"data_dir", c.Runtime.DataDir, filepath.Join(dir, "data")},
		{"nodes", len(c.Nodes), 3},
		{"maximum_lag", c.Failover.MaximumLag, int64(16 << 20)},
		{"failback", c.Failover.Failback, "manual"},
		{"catalog", c.Catalog != nil && c.Catalog.Address == "127.0.0.1:6390" && c.Catalog.Managed, true},
		{"catalog data dir", c.Catalog != nil && c.Catalog.DataDir == filepath.Join(dir, "data", "redis"), true},
		{"backup", c.Backup != nil, true},
	}
	for i, name := range []string{"db1", "db2", "db3"} {
		n := c.Node(name)
		if n == nil {
			t.Fatalf("no node %s", name)
		}
		checks = append(checks, []struct {
			what      string
			got, want any
		}{
			{name + " host", n.Host, "127.0.0.1"},
			{name + " port", n.Port, 5441 + i},
			{name + " slot", n.Slot, name},
			{name + " data dir", n.DataDir, filepath.Join(dir, "data", name)},
		}...)
	}
	if b := c.Backup; b != nil {
		checks = append(checks, []struct {
			what      string
			got, want any
		}{
			{"repository", b.Repository, filepath.Join(dir, "backups")},
			{"compression", b.Compression, "zstd"},
			{"retention days", b.Retention.Days, 6},
			{"retention fulls", b.Retention.Fulls, 0},
			{"schedule", b.Schedule, config.Schedule{Full: "0 2 * * 1", Incremental: "0 2 * * 2,4,6", Differential: "0 2 * * 3,5"}},
		}...)
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.what, ch.got, ch.want)
		}
	}
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range secrets {
		if strings.Contains(string(out), v) {
			t.Errorf("the decoded cluster's JSON holds a secret: %s", out)
		}
	}
}

// TestRetention: days = 6 by default; a count of fulls alone replaces
// the age rule; both together keep what either keeps.
func TestRetention(t *testing.T) {
	for _, tc := range []struct {
		block       string
		days, fulls int
	}{
		{`backup {}`, 6, 0},
		{"backup {\n retention { fulls = 2 }\n}", 0, 2},
		{"backup {\n retention { days = 14 }\n}", 14, 0},
		{"backup {\n retention {\n days = 3\n fulls = 1\n }\n}", 3, 1},
	} {
		src := `cluster "min" {
  primary = "db1"
  postgres { password = "p" }
  replication { password = "r" }
  node "db1" { port = 5441 }
  ` + tc.block + `
}`
		r := Parse([]byte(src), filepath.Join(t.TempDir(), "cluster.hcl"))
		if r.Cluster == nil || r.Cluster.Backup == nil {
			t.Fatalf("%s: %v", tc.block, r.Diags)
		}
		if got := r.Cluster.Backup.Retention; got.Days != tc.days || got.Fulls != tc.fulls {
			t.Errorf("%s: retention %+v, want days %d fulls %d", tc.block, got, tc.days, tc.fulls)
		}
	}
}
