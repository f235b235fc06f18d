// Package e2e runs the pgha binary the way an operator does, against real
// PostgreSQL servers and a real Redis started on free loopback ports.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgha/pgha/config/clusterfile"
	"github.com/pgha/pgha/internal/pki/certstore"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/reconcile"
)

var pghaBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgha-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pghaBin = filepath.Join(dir, "pgha")
	build := exec.Command("go", "build", "-o", pghaBin, "../cmd/pgha")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build pgha:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	superPW = "e2e-Super-s3cret"
	replPW  = "e2e-Repl-s3cret"
)

// TestImage is the PostgreSQL 17 image the docker scenarios use; `make
// image` builds it (no registry is reachable here).
const TestImage = "pgha-test/postgres:17"

// cluster is one cluster file in its own directory, with its ports, on
// one runtime ("local" or "docker").
type cluster struct {
	t         *testing.T
	rt        string
	name      string
	dir, file string
	ports     []int // nodes db1..dbN
	redis     int
	names     []string
	image     string
}

// newCluster writes a cluster file for n nodes and a managed Redis on the
// given runtime.
func newCluster(t *testing.T, rt string, n int) *cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil && rt == "local" {
		t.Fatal("redis-server not found; run `make setup` (apt-get install redis-server)")
	}
	ports := testenv.FreePorts(t, n+1)
	c := &cluster{t: t, rt: rt, name: "e2e", dir: testenv.Dir(t), ports: ports[:n], redis: ports[n], image: TestImage}
	runtime := "  runtime \"local\" {\n    data_dir = \"./data\"\n  }\n"
	switch rt {
	case "local":
		testenv.PGBinDir(t) // fail early, with the install hint, when PostgreSQL is missing
	case "docker":
		requireDocker(t, c.image)
		c.name = fmt.Sprintf("e2e%d", ports[0])
		runtime = fmt.Sprintf("  runtime \"docker\" {\n    image       = %q\n    redis_image = %q\n    network     = \"pgha-%s\"\n  }\n", c.image, c.image, c.name)
	}
	c.file = filepath.Join(c.dir, "cluster.hcl")
	var nodes strings.Builder
	for i := range n {
		name := fmt.Sprintf("db%d", i+1)
		c.names = append(c.names, name)
		fmt.Fprintf(&nodes, "  node %q {\n    port = %d\n    slot = \"%s_slot\"\n  }\n", name, c.ports[i], name)
	}
	src := fmt.Sprintf(`cluster %q {
  primary = "db1"
  postgres {
    password   = env("E2E_SUPER_PW")
    parameters = { fsync = "off", shared_buffers = "32MB" }
  }
%s%s  replication {
    password = env("E2E_REPL_PW")
  }
  failover {
    maximum_lag = "64kB"
  }
  catalog "redis" {
    address = "127.0.0.1:%d"
    managed = true
  }
}
`, c.name, runtime, nodes.String(), c.redis)
	c.write(src)
	t.Cleanup(c.teardown)
	return c
}

// sslParams is how the tests' own clients reach a node: verify-full
// against the cluster CA once pgha made one (pg_hba.conf then takes TCP
// over TLS only), plain text before.
func (c *cluster) sslParams() string {
	ca := filepath.Join(c.dir, "data", "tls", "ca.crt")
	if _, err := os.Stat(ca); err == nil {
		return "sslmode=verify-full sslrootcert=" + ca
	}
	return "sslmode=disable"
}

// catalog is a client of the cluster's managed Redis, over TLS with
// pgha's client certificate as pgha itself connects.
func (c *cluster) catalog() *redis.Catalog {
	store := certstore.Store{Dir: filepath.Join(c.dir, "data", "tls")}
	return redis.NewTLS(fmt.Sprintf("127.0.0.1:%d", c.redis), c.catalogPassword(), 0, c.name, func() (*tls.Config, error) { return store.ClientConfig("127.0.0.1") })
}

// catalogTLS is pgha's TLS client configuration for the managed catalog.
func (c *cluster) catalogTLS() *tls.Config {
	c.t.Helper()
	cfg, err := certstore.Store{Dir: filepath.Join(c.dir, "data", "tls")}.ClientConfig("127.0.0.1")
	if err != nil || cfg == nil {
		c.t.Fatalf("the cluster's TLS store: %v (config %v)", err, cfg)
	}
	return cfg
}

func (c *cluster) write(src string) {
	c.t.Helper()
	if err := os.WriteFile(c.file, []byte(src), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// requireDocker fails (never skips) when the engine or the test image is
// missing, saying how to get them.
func requireDocker(t *testing.T, image string) {
	t.Helper()
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Fatalf("the Docker engine is not reachable (%v: %s); start dockerd (on Debian: apt-get install docker.io)", err, out)
	}
	if err := exec.Command("docker", "image", "inspect", image).Run(); err != nil {
		t.Fatalf("test image %s is missing; build it with `make image`", image)
	}
}

// teardown stops whatever the test left running, even after a failure.
func (c *cluster) teardown() {
	if c.rt == "local" {
		// What the servers and the managed Redis logged must not hold a
		// password either (a connection string or an error echoed back).
		logs, _ := filepath.Glob(filepath.Join(c.dir, "data", "log", "*.log"))
		logs = append(logs, filepath.Join(c.dir, "data", "redis", "redis.log"))
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil {
				for _, s := range []string{superPW, replPW, apiToken, c.catalogPassword()} {
					if s != "" && strings.Contains(string(b), s) {
						c.t.Errorf("%s holds a secret", l)
					}
				}
			}
		}
	}
	if c.t.Failed() && c.rt == "local" {
		// The servers' logs say why a node did not stream or start; the
		// temporary directory holding them is gone after the test.
		logs, _ := filepath.Glob(filepath.Join(c.dir, "data", "log", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			c.t.Logf("--- tail of %s\n%s", l, b)
		}
	}
	if r := c.pgha("destroy", "-auto-approve", "-delete-volumes"); r.code != 0 {
		c.t.Logf("destroy at cleanup: %s%s", r.stdout, r.stderr)
	}
	if c.rt == "docker" {
		for _, kind := range [][]string{{"ps", "-aq"}, {"volume", "ls", "-q"}, {"network", "ls", "-q"}} {
			args := append(kind, "--filter", "label=io.pgha.cluster="+c.name)
			out, _ := exec.Command("docker", args...).Output()
			for _, id := range strings.Fields(string(out)) {
				rm := map[string][]string{"ps": {"rm", "-f"}, "volume": {"volume", "rm", "-f"}, "network": {"network", "rm"}}[kind[0]]
				_ = exec.Command("docker", append(rm, id)...).Run()
			}
		}
		return
	}
	for _, name := range c.names {
		_ = testenv.Command(c.t, filepath.Join(testenv.PGBinDir(c.t), "pg_ctl"), "-D", c.dataDir(name), "-m", "immediate", "stop").Run()
	}
	if pid, err := os.ReadFile(filepath.Join(c.dir, "data", "redis", "redis.pid")); err == nil {
		_ = exec.Command("kill", strings.TrimSpace(string(pid))).Run()
	}
}

// container is a node's container name on the docker runtime.
func (c *cluster) container(node string) string { return "pgha-" + c.name + "-" + node }

// leftovers lists what the cluster still has on its runtime: data
// directories, or labelled containers and volumes.
func (c *cluster) leftovers() []string {
	var out []string
	if c.rt == "docker" {
		for _, kind := range [][]string{{"ps", "-a"}, {"volume", "ls"}} {
			b, _ := exec.Command("docker", append(kind, "-q", "--filter", "label=io.pgha.cluster="+c.name)...).Output()
			out = append(out, strings.Fields(string(b))...)
		}
		return out
	}
	for _, n := range c.names {
		if _, err := os.Stat(c.dataDir(n)); !os.IsNotExist(err) {
			out = append(out, c.dataDir(n))
		}
	}
	return out
}

func (c *cluster) dataDir(node string) string {
	if c.rt == "docker" {
		return "/var/lib/pgha/data"
	}
	return filepath.Join(c.dir, "data", node)
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// pgha runs the binary with -f set to the cluster file and asserts that no
// secret appears in what it prints.
func (c *cluster) pgha(args ...string) result {
	c.t.Helper()
	return c.pghaCtx(context.Background(), args...)
}

// pghaInput runs pgha with stdin, as an operator answering the prompt.
func (c *cluster) pghaInput(stdin string, args ...string) result {
	c.t.Helper()
	return c.pghaRun(context.Background(), strings.NewReader(stdin), args...)
}

func (c *cluster) pghaCtx(ctx context.Context, args ...string) result {
	c.t.Helper()
	return c.pghaRun(ctx, nil, args...)
}

// command is `pgha ARGS[0] -f FILE ARGS[1:]...` in the cluster's
// directory, for tests that must signal or stream the process; they pass
// what it printed to noSecret.
func (c *cluster) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{args[0], "-f", c.file}, args[1:]...)
	cmd := exec.CommandContext(ctx, pghaBin, full...)
	cmd.Env = append(os.Environ(), "E2E_SUPER_PW="+superPW, "E2E_REPL_PW="+replPW)
	cmd.Dir = c.dir
	return cmd
}

// noSecret fails the test when text, which what produced, holds one of
// the cluster's passwords.
func (c *cluster) noSecret(what, text string) {
	c.t.Helper()
	for _, s := range []string{superPW, replPW, apiToken, c.catalogPassword()} {
		if s != "" && strings.Contains(text, s) {
			c.t.Fatalf("%s shows a secret:\n%s", what, text)
		}
	}
}

func (c *cluster) pghaRun(ctx context.Context, stdin io.Reader, args ...string) result {
	c.t.Helper()
	cmd := c.command(ctx, args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		c.t.Fatalf("run pgha %v: %v", args, err)
	}
	c.noSecret(fmt.Sprintf("pgha %v", args), r.String())
	return r
}

// catalogPassword is the password pgha generated for the managed catalog
// ("" before the first apply).
func (c *cluster) catalogPassword() string {
	b, err := os.ReadFile(filepath.Join(c.dir, ".secrets", "catalog"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (c *cluster) mustPgha(args ...string) result {
	c.t.Helper()
	r := c.pgha(args...)
	if r.code != 0 {
		c.t.Fatalf("pgha %v:\n%s", args, r)
	}
	return r
}

// conn opens a superuser connection to a node.
func (c *cluster) conn(ctx context.Context, node string) *pgx.Conn {
	c.t.Helper()
	i := -1
	for j, n := range c.names {
		if n == node {
			i = j
		}
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres %s", c.ports[i], c.sslParams()))
	if err != nil {
		c.t.Fatal(err)
	}
	cfg.Password = superPW
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		c.t.Fatalf("connect to %s: %v", node, err)
	}
	c.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// pgctl runs pg_ctl on a node by hand, the way an operator makes drift.
func (c *cluster) pgctl(node string, args ...string) {
	c.t.Helper()
	full := append([]string{"-D", c.dataDir(node), "-w"}, args...)
	cmd := testenv.Command(c.t, filepath.Join(testenv.PGBinDir(c.t), "pg_ctl"), full...)
	if c.rt == "docker" {
		cmd = exec.Command("docker", append([]string{"exec", "-u", "postgres", c.container(node), "/usr/lib/postgresql/17/bin/pg_ctl"}, full...)...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("pg_ctl %v: %v\n%s", args, err, out)
	}
}

// eventually retries f until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// with returns the cluster bound to a subtest's t, so that helpers fail
// the subtest, not its parent.
func (c *cluster) with(t *testing.T) *cluster {
	cc := *c
	cc.t = t
	return &cc
}

// port returns a node's port.
func (c *cluster) port(node string) int {
	for i, n := range c.names {
		if n == node {
			return c.ports[i]
		}
	}
	c.t.Fatalf("no node %s", node)
	return 0
}

// kill kills a node the hard way: kill -9 of the postmaster, or docker kill.
func (c *cluster) kill(node string) {
	c.t.Helper()
	if c.rt == "docker" {
		if out, err := exec.Command("docker", "kill", c.container(node)).CombinedOutput(); err != nil {
			c.t.Fatalf("docker kill: %v %s", err, out)
		}
		return
	}
	b, err := os.ReadFile(filepath.Join(c.dataDir(node), "postmaster.pid"))
	if err != nil {
		c.t.Fatal(err)
	}
	pid := strings.SplitN(string(b), "\n", 2)[0]
	if out, err := exec.Command("kill", "-9", pid).CombinedOutput(); err != nil {
		c.t.Fatalf("kill -9 %s: %v %s", pid, err, out)
	}
}

// sh runs a shell command as the postgres user next to a node's data:
// on this machine for the local runtime, in the container on Docker.
func (c *cluster) sh(node, script string) string {
	c.t.Helper()
	var cmd *exec.Cmd
	if c.rt == "docker" {
		if out, err := exec.Command("docker", "start", c.container(node)).CombinedOutput(); err != nil {
			c.t.Fatalf("docker start: %v %s", err, out)
		}
		cmd = exec.Command("docker", "exec", "-u", "postgres", "-e", "PATH=/usr/lib/postgresql/17/bin:/usr/bin:/bin", "-e", "D="+c.dataDir(node), c.container(node), "sh", "-c", script)
	} else {
		cmd = testenv.Command(c.t, "sh", "-c", script)
		cmd.Env = append(cmd.Env, "PATH="+testenv.PGBinDir(c.t)+":/usr/bin:/bin", "D="+c.dataDir(node))
		cmd.Dir = "/"
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s on %s: %v\n%s", script, node, err, out)
	}
	return string(out)
}

// primary returns the node that accepts writes now.
func (c *cluster) primary(ctx context.Context) string {
	c.t.Helper()
	var st struct {
		Nodes []struct{ Name, Role string } `json:"nodes"`
	}
	r := c.mustPgha("status", "-json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		c.t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if n.Role == "primary" {
			return n.Name
		}
	}
	return ""
}

// peer is how nodes reach node: host:port locally, container:5432 on Docker.
func (c *cluster) peer(node string) string {
	if c.rt == "docker" {
		return c.container(node) + ":5432"
	}
	return fmt.Sprintf("127.0.0.1:%d", c.port(node))
}

// connPort opens a superuser connection to any local server port.
func (c *cluster) connPort(ctx context.Context, port int) *pgx.Conn {
	c.t.Helper()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=prefer", port))
	if err != nil {
		c.t.Fatal(err)
	}
	cfg.Password = superPW
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		c.t.Fatalf("connect to port %d: %v", port, err)
	}
	c.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// addBlock appends a block (a backup block, say) to the cluster file.
func (c *cluster) addBlock(block string) {
	c.t.Helper()
	src, err := os.ReadFile(c.file)
	if err != nil {
		c.t.Fatal(err)
	}
	i := strings.LastIndex(string(src), "}")
	c.write(string(src[:i]) + block + "}\n")
}

// env opens the cluster file in-process, for what the binary cannot do:
// a fixed clock, or restoring a chain and querying it.
func (c *cluster) env() *reconcile.Env {
	c.t.Helper()
	os.Setenv("E2E_SUPER_PW", superPW) // the same values every test uses
	os.Setenv("E2E_REPL_PW", replPW)
	r := clusterfile.Load(c.file)
	if r.Diags.HasErrors() {
		c.t.Fatal(r.Diags)
	}
	env, err := reconcile.Open(r.Cluster)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(env.Close)
	return env
}
