package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// pghaCluster is three pgha nodes and a managed Redis catalog, kept by one
// `pgha watch` at its default policy (or with failover.primary_crash =
// "failover"), on the local or the docker runtime.
type pghaCluster struct {
	bin, dir, file, name, runtime, crashPolicy string
	env                                        []string
	pg                                         []int
	redis                                      int   // the managed catalog's port
	health                                     []int // health_port per node, with the API
	watch                                      *exec.Cmd
	watchDone                                  chan struct{}
	logPath                                    string
	applies                                    int // rejoins the watcher left to a `pgha apply`
}

func startPgha(ctx context.Context, bin, runtime, image, crashPolicy string) (*pghaCluster, error) {
	return startPghaAPI(ctx, bin, runtime, image, crashPolicy, false)
}

// startPghaAPI is startPgha with, when withAPI, `pgha watch` serving its
// API too: an api block on a free port (TLS as the cluster, no token) and
// a health_port per node (c.health, db1 first).
func startPghaAPI(ctx context.Context, bin, runtime, image, crashPolicy string, withAPI bool) (*pghaCluster, error) {
	o := pghaOptions{withAPI: withAPI}
	if crashPolicy != "" {
		// The default policy, but for primary_crash when the row asks for it.
		o.failover = fmt.Sprintf("primary_crash = %q", crashPolicy)
	}
	c, err := startPghaWith(ctx, bin, runtime, image, o)
	if c != nil {
		c.crashPolicy = crashPolicy
	}
	return c, err
}

// pghaOptions are the parts of a pghaCluster's file that differ between
// the benches that run one under `pgha watch`.
type pghaOptions struct {
	// name is the cluster's name (and the scratch directory's prefix);
	// "benchfo" when empty.
	name    string
	withAPI bool
	// noWatch leaves the cluster without `pgha watch` (nothing fences).
	noWatch bool
	// failover, replication and watch are lines inside those blocks (no
	// block when empty; replication's password line is always there).
	failover, replication, watch string
	// agent is the agent block's body ("" and agents false: no block).
	agent  string
	agents bool
	// authority is a whole authority block (e.g. authority "etcd" {...}),
	// lines unindented; none when empty.
	authority string
}

// startPghaWith makes a three-node cluster with a managed Redis catalog in
// a bench scratch directory (newScratch), applies it, creates the
// writer's table and starts `pgha watch`, waiting for its leader lease.
func startPghaWith(ctx context.Context, bin, runtime, image string, o pghaOptions) (*pghaCluster, error) {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	if o.name == "" {
		o.name = "benchfo"
	}
	sc, err := newScratch("pgha-"+o.name, o.name, 8, runtime, image)
	if err != nil {
		return nil, err
	}
	dir, ports := sc.dir, sc.ports
	hp := make([]string, 3)
	apiBlock := ""
	var health []int
	if o.withAPI {
		health = ports[5:8]
		for i := range hp {
			hp[i] = fmt.Sprintf("\n    health_port = %d", health[i])
		}
		apiBlock = fmt.Sprintf("  api {\n    listen = \"127.0.0.1:%d\"\n  }\n", ports[4])
	}
	c := &pghaCluster{bin: bin, dir: dir, file: sc.file, name: sc.name, runtime: runtime,
		pg: ports[:3], redis: ports[3], health: health, logPath: filepath.Join(dir, "watch.log"),
		env: append(os.Environ(), "BENCH_PW=bench-only-password", "PGPASSWORD=bench-only-password")}
	block := func(name, body string) string {
		if body == "" {
			return ""
		}
		return "  " + name + " {\n" + indentLines(body, "    ") + "  }\n"
	}
	src := fmt.Sprintf(`cluster %q {
  primary = "db1"
  postgres {
    password = env("BENCH_PW")
  }
%s  node "db1" {
    port = %d
    slot = "db1"%s
  }
  node "db2" {
    port = %d
    slot = "db2"%s
  }
  node "db3" {
    port = %d
    slot = "db3"%s
  }
  replication {
    password = env("BENCH_PW")
%s  }
%s%s%s  catalog "redis" {
    address = "127.0.0.1:%d"
    managed = true
  }
}
`, c.name, sc.rtBlock, ports[0], hp[0], ports[1], hp[1], ports[2], hp[2], indentLines(o.replication, "    "),
		block("failover", o.failover), block("watch", o.watch)+agentBlock(o)+indentBlock(o.authority), apiBlock, ports[3])
	if err := os.WriteFile(c.file, []byte(src), 0o644); err != nil {
		sc.remove()
		return nil, err
	}
	if out, err := c.pgha("apply", "-auto-approve"); err != nil {
		c.close()
		return nil, fmt.Errorf("pgha apply: %v\n%s", err, out)
	}
	if err := createTable(ctx, c); err != nil {
		c.close()
		return nil, err
	}
	if o.noWatch {
		return c, nil
	}
	if err := c.startWatch(); err != nil {
		c.close()
		return nil, err
	}
	if err := waitFor(ctx, 30*time.Second, func() error {
		if c.decisions(0)["leader acquired"] == 0 {
			return fmt.Errorf("pgha watch has not acquired the leader lease (log %s)", c.logPath)
		}
		return nil
	}); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// startWatch starts `pgha watch` on the cluster, logging JSON records
// (appended: a restarted watcher's records follow its predecessor's).
func (c *pghaCluster) startWatch() error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := []string{"watch", "-f", c.file, "-log-format", "json"}
	if os.Getenv("BENCH_WATCH_DEBUG") != "" {
		// The time of each check and of each action of a restart or a
		// failover, in the kept log (BENCH_KEEP).
		args = append(args, "-log-level", "debug")
	}
	c.watch = exec.Command(c.bin, args...)
	c.watch.Env = c.env
	c.watch.Stdout, c.watch.Stderr = logf, logf
	c.watch.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.watch.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("pgha watch: %w", err)
	}
	done := make(chan struct{})
	c.watchDone = done
	cmd := c.watch
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	return nil
}

// stopWatch ends the watcher with sig and waits for it (SIGKILL after 15 s).
func (c *pghaCluster) stopWatch(sig syscall.Signal) {
	if c.watch == nil || c.watch.Process == nil {
		return
	}
	_ = c.watch.Process.Signal(sig)
	select {
	case <-c.watchDone:
	case <-time.After(15 * time.Second):
		_ = c.watch.Process.Kill()
		<-c.watchDone
	}
}

func (c *pghaCluster) pgha(args ...string) ([]byte, error) {
	cmd := exec.Command(c.bin, append([]string{args[0], "-f", c.file}, args[1:]...)...)
	cmd.Env = c.env
	return cmd.CombinedOutput()
}

func (c *pghaCluster) label() (string, string, string) {
	crash := "PostgreSQL killed"
	if c.runtime == "docker" && dockerCrash == "container" {
		crash = "docker kill"
	}
	if c.crashPolicy == "" {
		return "pgha watch", c.runtime, "default policy, " + crash
	}
	return "pgha watch", c.runtime, fmt.Sprintf("primary_crash = %q, %s", c.crashPolicy, crash)
}

func (c *pghaCluster) ports() []int { return c.pg }

func (c *pghaCluster) connString() string {
	hs := make([]string, len(c.pg))
	ps := make([]string, len(c.pg))
	for i, p := range c.pg {
		hs[i], ps[i] = "127.0.0.1", fmt.Sprint(p)
	}
	// The cluster runs with TLS (the default): verify-full against its CA.
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres password=bench-only-password sslmode=verify-full sslrootcert=%s connect_timeout=1",
		strings.Join(hs, ","), strings.Join(ps, ","), filepath.Join(c.dir, "data", "tls", "ca.crt"))
}

func (c *pghaCluster) node(port int) string {
	for i, p := range c.pg {
		if p == port {
			return fmt.Sprintf("db%d", i+1)
		}
	}
	return ""
}

// dockerCrash is how a pgha node on Docker crashes (-docker-crash):
// "postgres" kills its PostgreSQL alone, postmaster and children, the
// container (its keeper) left running, as on the local runtime and as
// issue 11 words it; "container" is `docker kill` of the whole container.
var dockerCrash = "postgres"

// crash kills the PostgreSQL instance alone (postmaster and children);
// the watcher keeps running, as on a host whose database process died.
func (c *pghaCluster) crash(port int) error {
	n := c.node(port)
	if c.runtime == "docker" {
		ct := "pgha-" + c.name + "-" + n
		if dockerCrash == "container" {
			if out, err := exec.Command("docker", "kill", ct).CombinedOutput(); err != nil {
				return fmt.Errorf("docker kill: %v %s", err, out)
			}
			return nil
		}
		pm, err := containerPostmaster(ct)
		if err != nil {
			return err
		}
		killTrees(pm)
		return nil
	}
	pm := postmasterPID(filepath.Join(c.dir, "data", n))
	if pm == 0 {
		return fmt.Errorf("no postmaster.pid for %s", n)
	}
	killTrees(pm)
	return nil
}

// containerPostmaster is the host pid of the postmaster in a container:
// the postgres process whose parent is not one (docker top lists host
// pids).
func containerPostmaster(ct string) (int, error) {
	out, err := exec.Command("docker", "top", ct, "-eo", "pid,ppid,args").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("docker top %s: %v %s", ct, err, out)
	}
	type proc struct{ pid, ppid int }
	var ps []proc
	isPG := map[int]bool{}
	for _, l := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 3 || !strings.HasSuffix(f[2], "/bin/postgres") && !strings.HasPrefix(f[2], "postgres:") {
			continue
		}
		var p proc
		if _, err := fmt.Sscan(f[0], &p.pid); err != nil {
			continue
		}
		if _, err := fmt.Sscan(f[1], &p.ppid); err != nil {
			continue
		}
		ps = append(ps, p)
		isPG[p.pid] = true
	}
	for _, p := range ps {
		if !isPG[p.ppid] {
			return p.pid, nil
		}
	}
	return 0, fmt.Errorf("no postmaster in %s:\n%s", ct, out)
}

func (c *pghaCluster) watching() error {
	select {
	case <-c.watchDone:
		return fmt.Errorf("pgha watch exited (log %s)", c.logPath)
	default:
		return nil
	}
}

func (c *pghaCluster) healthy(ctx context.Context) error {
	return waitStreaming(ctx, c, 60*time.Second, c.watching)
}

// recover leaves the rejoin to the watcher (heal and rejoin = "rewind" by
// default); if it has not happened within a minute, a `pgha apply` does
// it, and the table's note counts those.
func (c *pghaCluster) recover(ctx context.Context, crashed int) error {
	err := waitStreaming(ctx, c, 60*time.Second, c.watching)
	if err == nil {
		return nil
	}
	fmt.Printf("  pgha: the cluster is not whole a minute after the crash (%v); pgha apply\n", err)
	c.applies++
	if out, err := c.pgha("apply", "-auto-approve"); err != nil {
		return fmt.Errorf("pgha apply: %v\n%s", err, out)
	}
	return c.healthy(ctx)
}

// decisions counts the watcher's log records by message, from byte offset
// `from` of its log on.
func (c *pghaCluster) decisions(from int64) map[string]int {
	n := map[string]int{}
	f, err := os.Open(c.logPath)
	if err != nil {
		return n
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return n
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg != "" {
			n[rec.Msg]++
		}
	}
	return n
}

func (c *pghaCluster) logSize() int64 {
	st, err := os.Stat(c.logPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// note lists what the watcher decided over the runs, from its log.
func (c *pghaCluster) note() string {
	d := c.decisions(0)
	var parts []string
	for _, k := range []string{"primary lost", "failover", "restart in place", "rejoin", "heal", "held by policy"} {
		if d[k] > 0 {
			parts = append(parts, fmt.Sprintf("%q x%d", k, d[k]))
		}
	}
	sort.Strings(parts)
	s := "watcher log: " + strings.Join(parts, ", ")
	if c.applies > 0 {
		s += fmt.Sprintf("; %d rejoins left to `pgha apply` after a minute", c.applies)
	}
	if c.crashPolicy == "failover" {
		s += "; primary_crash = \"failover\" is the row comparable with a host crash of the baselines"
	}
	return s
}

func (c *pghaCluster) close() {
	c.stopWatch(syscall.SIGTERM)
	if out, err := c.pgha("destroy", "-auto-approve", "-delete-volumes"); err != nil {
		fmt.Fprintf(os.Stderr, "pgha destroy: %v\n%s", err, out)
	}
	if os.Getenv("BENCH_KEEP") != "" {
		fmt.Println("kept", c.dir)
		return
	}
	os.RemoveAll(c.dir)
}

// runSoak runs pgbench at full CPU against the primary of a cluster under
// `pgha watch` for the given minutes and reports every failover the
// watcher made (or suspected) meanwhile: under load alone there must be
// none.
func runSoak(bin string, minutes int, runtime, image string) error {
	ctx, stop := signalContext()
	defer stop()
	reapPostgres(ctx)
	fmt.Printf("soak: pgha watch at its default policy, three %s nodes...\n", runtime)
	c, err := startPgha(ctx, bin, runtime, image, "")
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.healthy(ctx); err != nil {
		return err
	}
	primary, err := findPrimary(ctx, c)
	if err != nil {
		return err
	}
	pgbench, err := findBin("pgbench")
	if err != nil {
		return err
	}
	env := append(c.env, "PGSSLMODE=require")
	common := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(primary), "-U", "postgres"}
	init := exec.CommandContext(ctx, pgbench, append(append([]string{"-i", "-q", "-s", "10"}, common...), "postgres")...)
	init.Env = env
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	from := c.logSize()
	fmt.Printf("soak: pgbench -c 8 -j 2 for %d min against the primary (%s)...\n", minutes, c.node(primary))
	start := time.Now()
	var loads []string
	done := make(chan struct{})
	go func() { // the load average each minute, to show the CPU was full
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				loads = append(loads, strings.Fields(loadAverage())[0])
			case <-done:
				return
			}
		}
	}()
	run := exec.CommandContext(ctx, pgbench, append(append([]string{"-c", "8", "-j", "2", "-T", fmt.Sprint(minutes * 60)}, common...), "postgres")...)
	run.Env = env
	out, err := run.CombinedOutput()
	close(done)
	took := time.Since(start)
	if err != nil && ctx.Err() == nil {
		// pgbench exits non-zero when a client's connection dropped: that
		// is the finding, not a bench error; say it.
		fmt.Printf("soak: pgbench: %v\n%s\n", err, tail(string(out), 5))
	}
	tps := "?"
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "tps = ") {
			tps = strings.Fields(l)[2]
		}
	}
	d := c.decisions(from)
	now, perr := findPrimary(ctx, c)
	changed := perr != nil || now != primary
	false_ := d["primary lost"] + d["failover"] + d["restart in place"]
	verdict := "met"
	if false_ > 0 || changed {
		verdict = "MISSED"
	}
	fmt.Printf("\nfalse-failover check: pgbench at full CPU against the primary under pgha watch (%s runtime)\n\n", runtime)
	fmt.Printf("%-10s %10s %-28s %8s %8s %9s %8s  %s\n", "runtime", "minutes", "load avg each minute", "tps", "suspect", "lost", "failover", "target: no failover")
	fmt.Printf("%-10s %10.1f %-28s %8s %8d %9d %8d  %s (primary still %s: %v)\n", runtime, took.Minutes(), strings.Join(loads, " "), tps,
		d["primary suspect"], d["primary lost"], d["failover"]+d["restart in place"], verdict, c.node(primary), !changed)
	return ctx.Err()
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// indentLines indents each line of block (none when it is empty).
func indentLines(block, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			b.WriteString(prefix + l + "\n")
		}
	}
	return b.String()
}

// agentBlock is the file's agent block when the options ask for agents.
func agentBlock(o pghaOptions) string {
	if !o.agents {
		return ""
	}
	return "  agent {\n" + indentLines(o.agent, "    ") + "  }\n"
}

// indentBlock indents a whole block for the cluster body: its first and
// last lines by two spaces, the lines between by four.
func indentBlock(block string) string {
	lines := strings.Split(strings.TrimSpace(block), "\n")
	if len(lines) < 2 {
		return ""
	}
	var b strings.Builder
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if i == 0 || i == len(lines)-1 {
			b.WriteString("  " + l + "\n")
		} else {
			b.WriteString("    " + l + "\n")
		}
	}
	return b.String()
}
