package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The two established tools the failover benchmark compares pgha with,
// installed from Debian's archive and run at their defaults on loopback:
// Patroni on a single-member etcd, and pg_auto_failover (a monitor and
// three keepers). Each runs three PostgreSQL 15 nodes as the postgres user
// under a temporary directory that is removed at the end.

const pgBin = "/usr/lib/postgresql/15/bin"

// baseline holds what both baselines share: their directory, processes
// and node ports.
type baseline struct {
	dir   string
	ps    *procs
	pg    []int
	data  []string
	extra []string // other data directories (the monitor's)
}

func newBaseline(prefix string, nPorts int) (*baseline, []int, error) {
	cred, err := postgresUser()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, nil, err
	}
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	ports, err := freePorts(nPorts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	env := []string{
		"PATH=" + pgBin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + dir, "LANG=C.UTF-8", "LC_ALL=C.UTF-8",
		// pg_autoctl keeps its configuration, state and pid files under
		// these: inside the bench's directory, not the postgres user's home.
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "share"),
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"),
	}
	b := &baseline{dir: dir, ps: &procs{cred: cred, dir: dir, env: env}, pg: ports[:3]}
	for i := range 3 {
		b.data = append(b.data, filepath.Join(dir, fmt.Sprintf("pg%d", i+1)))
	}
	return b, ports[3:], nil
}

func (b *baseline) ports() []int { return b.pg }

func (b *baseline) connString() string {
	ps := make([]string, len(b.pg))
	hs := make([]string, len(b.pg))
	for i, p := range b.pg {
		ps[i], hs[i] = fmt.Sprint(p), "127.0.0.1"
	}
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable connect_timeout=1",
		strings.Join(hs, ","), strings.Join(ps, ","))
}

func (b *baseline) nodeIndex(port int) int {
	for i, p := range b.pg {
		if p == port {
			return i
		}
	}
	return -1
}

// close kills everything the baseline started and removes its directory.
func (b *baseline) close() {
	b.ps.killAll(append(append([]string{}, b.data...), b.extra...)...)
	time.Sleep(300 * time.Millisecond)
	if os.Getenv("BENCH_KEEP") != "" { // for debugging a baseline: its logs stay
		fmt.Println("kept", b.dir)
		return
	}
	os.RemoveAll(b.dir)
}

// createTable makes the writer's table on the primary.
func createTable(ctx context.Context, c haCluster) error {
	p, err := findPrimary(ctx, c)
	if err != nil {
		return err
	}
	conn, err := connectOne(ctx, c, p)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS bench_writes (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
	return err
}

// ---- Patroni ----

type patroniCluster struct {
	*baseline
	etcdPort int
	agents   []int // pids of the patroni processes, by node
	rest     []int // their REST API ports, by node
	cfgs     []string
	reclones int
}

func (c *patroniCluster) label() (string, string, string) {
	return "Patroni", "local", "defaults (ttl 30, loop_wait 10), host crash"
}

func startPatroni(ctx context.Context) (*patroniCluster, error) {
	b, more, err := newBaseline("pgha-bench-patroni", 3+2+3)
	if err != nil {
		return nil, err
	}
	c := &patroniCluster{baseline: b, etcdPort: more[0], agents: make([]int, 3)}
	etcdPeer, rest := more[1], more[2:]
	c.rest = rest
	if _, err := b.ps.start("etcd.log", "etcd", "--name", "bench", "--data-dir", filepath.Join(b.dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-cluster", fmt.Sprintf("bench=http://127.0.0.1:%d", etcdPeer)); err != nil {
		b.close()
		return nil, err
	}
	if err := waitFor(ctx, 20*time.Second, func() error {
		_, err := b.ps.run("etcdctl", "--endpoints", fmt.Sprintf("127.0.0.1:%d", c.etcdPort), "endpoint", "health")
		return err
	}); err != nil {
		b.close()
		return nil, fmt.Errorf("etcd: %w", err)
	}
	// Patroni's configuration names only what a cluster must have (ports,
	// directories, credentials, the DCS): ttl, loop_wait, retry_timeout,
	// maximum_lag_on_failover, asynchronous replication and use_pg_rewind
	// stay at their defaults.
	for i := range 3 {
		cfg := fmt.Sprintf(`scope: bench
namespace: /pgha-bench/
name: pg%[1]d
restapi:
  listen: 127.0.0.1:%[2]d
  connect_address: 127.0.0.1:%[2]d
etcd3:
  host: 127.0.0.1:%[3]d
bootstrap:
  dcs:          # Patroni's defaults, written out
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
  initdb:
  - encoding: UTF8
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 trust
  - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:%[4]d
  connect_address: 127.0.0.1:%[4]d
  data_dir: %[5]s
  bin_dir: %[6]s
  pgpass: %[7]s/pgpass%[1]d
  authentication:
    replication:
      username: replicator
      password: bench-replicator
    superuser:
      username: postgres
      password: bench-superuser
  parameters:
    unix_socket_directories: %[7]s
`, i+1, rest[i], c.etcdPort, b.pg[i], b.data[i], pgBin, b.dir)
		path := filepath.Join(b.dir, fmt.Sprintf("patroni%d.yml", i+1))
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			b.close()
			return nil, err
		}
		c.cfgs = append(c.cfgs, path)
	}
	// The first node bootstraps alone (initdb), the others then clone it.
	if err := c.startAgent(0); err != nil {
		b.close()
		return nil, err
	}
	if err := waitFor(ctx, 60*time.Second, func() error { _, err := findPrimary(ctx, c); return err }); err != nil {
		b.close()
		return nil, fmt.Errorf("patroni bootstrap: %w", err)
	}
	for i := 1; i < 3; i++ {
		if err := c.startAgent(i); err != nil {
			b.close()
			return nil, err
		}
	}
	if err := c.healthy(ctx); err != nil {
		b.close()
		return nil, err
	}
	if err := createTable(ctx, c); err != nil {
		b.close()
		return nil, err
	}
	return c, nil
}

func (c *patroniCluster) startAgent(i int) error {
	cmd, err := c.ps.start(fmt.Sprintf("patroni%d.log", i+1), "patroni", c.cfgs[i])
	if err != nil {
		return err
	}
	c.agents[i] = cmd.Process.Pid
	return nil
}

func (c *patroniCluster) patronictl(args ...string) ([]byte, error) {
	return c.ps.run("patronictl", append([]string{"-c", c.cfgs[0]}, args...)...)
}

// healthy: one leader and two replicas running in `patronictl list`, and
// two standbys streaming.
func (c *patroniCluster) healthy(ctx context.Context) error {
	return waitStreaming(ctx, c, 90*time.Second, func() error {
		out, err := c.patronictl("list", "-f", "json")
		if err != nil {
			return err
		}
		if n := strings.Count(string(out), `"State": "running"`) + strings.Count(string(out), `"State": "streaming"`); n != 3 {
			return fmt.Errorf("patronictl list: %d of 3 members running", n)
		}
		return nil
	})
}

// crash is a host crash: the node's Patroni and its PostgreSQL, all of
// its processes, killed at once.
func (c *patroniCluster) crash(port int) error {
	i := c.nodeIndex(port)
	pm := postmasterPID(c.data[i])
	if pm == 0 {
		return fmt.Errorf("no postmaster.pid in %s", c.data[i])
	}
	killTrees(c.agents[i], pm)
	return nil
}

// recover restarts the crashed node's Patroni, as the host coming back
// would. At its defaults (use_pg_rewind off) Patroni cannot rejoin a
// former primary that wrote past the fork; the bench then gives it a new
// clone, as its operator would: the agent stopped, the diverged data
// directory moved aside (kept until the bench's directory goes), the agent
// started again, which clones the leader.
func (c *patroniCluster) recover(ctx context.Context, crashedPort int) error {
	i := c.nodeIndex(crashedPort)
	if err := c.startAgent(i); err != nil {
		return err
	}
	err := waitStreaming(ctx, c, 30*time.Second, nil)
	if err == nil {
		return nil
	}
	c.reclones++
	fmt.Printf("  Patroni: pg%d did not rejoin by itself (%v); a new clone\n", i+1, err)
	killTrees(c.agents[i], postmasterPID(c.data[i]))
	time.Sleep(500 * time.Millisecond)
	if err := os.Rename(c.data[i], fmt.Sprintf("%s.diverged%d", c.data[i], c.reclones)); err != nil {
		return err
	}
	if err := c.startAgent(i); err != nil {
		return err
	}
	return c.healthy(ctx)
}

func (c *patroniCluster) note() string {
	return fmt.Sprintf("%d of the crashed primaries could not rejoin by themselves (use_pg_rewind off by default) and were re-cloned between runs", c.reclones)
}

// ---- pg_auto_failover ----

type autoFailoverCluster struct {
	*baseline
	monitorPort int
	monitorURI  string
	keepers     []int
	syncNames   string
	numSync     int
}

func (c *autoFailoverCluster) label() (string, string, string) {
	return "pg_auto_failover", "local", "defaults (sync ANY 1), host crash"
}

func startAutoFailover(ctx context.Context) (*autoFailoverCluster, error) {
	b, more, err := newBaseline("pgha-bench-paf", 3+1)
	if err != nil {
		return nil, err
	}
	c := &autoFailoverCluster{baseline: b, monitorPort: more[0], keepers: make([]int, 3)}
	mon := filepath.Join(b.dir, "monitor")
	b.extra = append(b.extra, mon)
	for _, d := range []string{"config", "share", "run"} {
		if _, err := b.ps.run("mkdir", "-p", filepath.Join(b.dir, d)); err != nil {
			b.close()
			return nil, err
		}
	}
	// --auth trust and --no-ssl: the loopback bench measures failover, not
	// authentication; everything else is pg_autoctl's default.
	if _, err := b.ps.run("pg_autoctl", "create", "monitor", "--pgdata", mon, "--pgport", fmt.Sprint(c.monitorPort),
		"--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl", "--pgctl", pgBin+"/pg_ctl"); err != nil {
		b.close()
		return nil, err
	}
	if _, err := b.ps.start("monitor.log", "pg_autoctl", "run", "--pgdata", mon); err != nil {
		b.close()
		return nil, err
	}
	c.monitorURI = fmt.Sprintf("postgres://autoctl_node@127.0.0.1:%d/pg_auto_failover?sslmode=disable", c.monitorPort)
	if err := waitFor(ctx, 30*time.Second, func() error { _, err := c.states(ctx); return err }); err != nil {
		b.close()
		return nil, fmt.Errorf("pg_auto_failover monitor: %w", err)
	}
	// The first node becomes the primary alone; the others then join it.
	start := func(i int) error {
		cmd, err := b.ps.start(fmt.Sprintf("node%d.log", i+1), "pg_autoctl", "create", "postgres",
			"--pgdata", b.data[i], "--pgport", fmt.Sprint(b.pg[i]), "--hostname", "127.0.0.1",
			"--name", fmt.Sprintf("node%d", i+1), "--monitor", c.monitorURI,
			"--auth", "trust", "--no-ssl", "--pgctl", pgBin+"/pg_ctl", "--run")
		if err != nil {
			return err
		}
		c.keepers[i] = cmd.Process.Pid
		return nil
	}
	if err := start(0); err != nil {
		b.close()
		return nil, err
	}
	if err := waitFor(ctx, 60*time.Second, func() error {
		st, err := c.states(ctx)
		if err != nil {
			return err
		}
		if len(st) != 1 || st[0] != "single/single" {
			return fmt.Errorf("states %v", st)
		}
		return nil
	}); err != nil {
		b.close()
		return nil, fmt.Errorf("pg_auto_failover first node: %w", err)
	}
	for i := 1; i < 3; i++ {
		if err := start(i); err != nil {
			b.close()
			return nil, err
		}
		// One at a time: the monitor assigns the join order.
		time.Sleep(2 * time.Second)
	}
	if err := c.healthy(ctx); err != nil {
		b.close()
		return nil, err
	}
	if err := createTable(ctx, c); err != nil {
		b.close()
		return nil, err
	}
	if p, err := findPrimary(ctx, c); err == nil {
		if conn, err := connectOne(ctx, c, p); err == nil {
			_ = conn.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&c.syncNames)
			conn.Close(ctx)
		}
	}
	if conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=autoctl_node dbname=pg_auto_failover sslmode=disable", c.monitorPort)); err == nil {
		_ = conn.QueryRow(ctx, "SELECT number_sync_standbys FROM pgautofailover.formation WHERE formationid = 'default'").Scan(&c.numSync)
		conn.Close(ctx)
	}
	return c, nil
}

// note says what pg_autoctl's default replication is, as read from the
// primary.
func (c *autoFailoverCluster) note() string {
	return fmt.Sprintf("pg_autoctl's default replication kept: synchronous_standby_names = '%s' with the formation's number_sync_standbys = %d "+
		"(a write waits for one standby while one is there)", c.syncNames, c.numSync)
}

// states reads every node's reported/goal state from the monitor.
func (c *autoFailoverCluster) states(ctx context.Context) ([]string, error) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, fmt.Sprintf("host=127.0.0.1 port=%d user=autoctl_node dbname=pg_auto_failover sslmode=disable", c.monitorPort))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT reportedstate::text || '/' || goalstate::text FROM pgautofailover.node ORDER BY nodeid")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// healthy: the monitor has one primary and two secondaries, each in the
// state it was assigned, and two standbys stream.
func (c *autoFailoverCluster) healthy(ctx context.Context) error {
	return waitStreaming(ctx, c, 120*time.Second, func() error {
		st, err := c.states(ctx)
		if err != nil {
			return err
		}
		prim, sec := 0, 0
		for _, s := range st {
			switch s {
			case "primary/primary":
				prim++
			case "secondary/secondary":
				sec++
			}
		}
		if prim != 1 || sec != 2 {
			return fmt.Errorf("monitor: node states %v", st)
		}
		return nil
	})
}

// crash is a host crash: the keeper and its PostgreSQL, every process of
// the node, killed at once.
func (c *autoFailoverCluster) crash(port int) error {
	i := c.nodeIndex(port)
	pm := postmasterPID(c.data[i])
	if pm == 0 {
		return fmt.Errorf("no postmaster.pid in %s", c.data[i])
	}
	killTrees(c.keepers[i], pm)
	return nil
}

// recover restarts the crashed node's keeper, as the host coming back
// would; pg_autoctl rejoins it (pg_rewind, or a new clone) by itself.
func (c *autoFailoverCluster) recover(ctx context.Context, crashedPort int) error {
	i := c.nodeIndex(crashedPort)
	cmd, err := c.ps.start(fmt.Sprintf("node%d.log", i+1), "pg_autoctl", "run", "--pgdata", c.data[i])
	if err != nil {
		return err
	}
	c.keepers[i] = cmd.Process.Pid
	return c.healthy(ctx)
}

// waitFor retries f until it succeeds or limit passes.
func waitFor(ctx context.Context, limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
}
