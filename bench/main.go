// Command bench measures `pgha plan` on a converged three-node local cluster
// (observe + diff + render, as an operator runs it) beside the baseline it
// replaces: a shell health check running psql on each node and redis-cli.
// It prints a table with the median of repeated runs and the target.
//
//	go run ./bench -pgha bin/pgha [-runs 30]
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	bin := flag.String("pgha", "bin/pgha", "the pgha binary to measure")
	runs := flag.Int("runs", 30, "timed runs per row")
	runtime := flag.String("runtime", "local", "local or docker")
	image := flag.String("image", "pgha-test/postgres:17", "PostgreSQL image (docker runtime)")
	ha := flag.Bool("ha", false, "measure failover, switchover and rejoin instead of plan")
	scale := flag.Int("scale", 70, "pgbench scale of the -ha and -backup data sets (70 is about 1 GB)")
	bk := flag.Bool("backup", false, "compare pgha's backups like for like with pg_basebackup (same compressor, level, threads) and pgBackRest: full, incremental, restore")
	floor := flag.Bool("backup-floor", false, "with -backup: also time the server's uncompressed stream to /dev/null (with and without its page checksum verification), the floor of any client")
	alt := flag.String("pgha-alt", "", "with -backup: a second pgha binary (a candidate build) whose fulls run beside, in the same rounds")
	rounds := flag.Int("rounds", 3, "with -backup and -sync: rounds, each running every tool once in turn (the table shows medians)")
	walCompression := flag.String("wal-compression", "", "with -backup: the server's wal_compression (e.g. zstd, lz4; empty: the server's default)")
	fo := flag.Bool("failover", false, "kill -9 of the primary under a writing client: pgha watch beside Patroni and pg_auto_failover")
	tools := flag.String("tools", "patroni,pg_auto_failover,pgha-local,pgha-docker", "with -failover: the systems to measure (pgha-local, pgha-docker: both policies; pgha-docker:restart or pgha-docker:failover: one)")
	flag.StringVar(&dockerCrash, "docker-crash", dockerCrash, "with -failover, pgha on Docker: postgres (kill -9 of the postmaster and its children, the container kept) or container (docker kill)")
	soak := flag.Int("soak", 0, "minutes of pgbench at full CPU under pgha watch, reporting any false failover")
	syncBench := flag.Bool("sync", false, "pgbench throughput with synchronous replication (ANY 1 of two standbys) beside asynchronous, in turn on one cluster")
	syncSeconds := flag.Int("sync-seconds", 20, "with -sync: seconds of each pgbench run")
	archive := flag.Bool("archive", false, "the continuous WAL archive's delay (commit -> durable in the repository) under pgbench, median and p99")
	archiveSeconds := flag.Int("archive-seconds", 30, "with -archive: seconds of pgbench per row")
	hl := flag.Bool("health", false, "hammer the health checks of pgha watch's health ports beside Patroni's REST API")
	hlClients := flag.Int("health-clients", 8, "with -health: concurrent keep-alive clients")
	hlDur := flag.Duration("health-duration", 10*time.Second, "with -health: how long each system is hammered")
	chaosN := flag.Int("chaos", 0, "run a fault campaign of N randomized faults (kill -9 or SIGSTOP of a node, a node cut off from the network, catalog down, watcher killed idle or mid-failover, apply killed mid-switchover) under a writer and a 50 ms probe")
	seed := flag.Uint64("seed", 0, "with -chaos: the seed of the faults (0: drawn from the clock; printed in the report, to replay)")
	chaosFaults := flag.String("chaos-faults", strings.Join(chaosKinds, ","), "with -chaos: the fault kinds to draw from")
	chaosOnly := flag.String("chaos-only", "", "with -chaos: run only these faults of the seed's sequence (indexes, e.g. 7,12), to replay them")
	authority := flag.String("authority", "redis", "with -chaos: the cluster's authority: redis (the catalog) or etcd (a three-member etcd the bench starts; adds the faults etcd-member and etcd-majority to the default kinds)")
	chaosFor := flag.Duration("chaos-for", 0, "with -chaos: draw no new fault after this long (0: no limit); the campaign then ends as usual (final count, table) and says how many faults it ran")
	agents := flag.Bool("agents", false, "with -chaos: declare agent { self_fence = \"5s\" } and run pgha agent per node; adds the fault kind agent to the default kinds")
	flag.Parse()
	var err error
	if *chaosN > 0 {
		o := chaosOptions{n: *chaosN, seed: *seed, kinds: splitList(*chaosFaults), authority: *authority, runtime: *runtime, agents: *agents, limit: *chaosFor}
		if o.agents && !isFlagSet("chaos-faults") {
			o.kinds = append(o.kinds, chaosAgentKinds...)
		}
		if o.authority == "etcd" && !isFlagSet("chaos-faults") {
			o.kinds = append(o.kinds, chaosEtcdKinds...)
		}
		if o.seed == 0 {
			o.seed = uint64(time.Now().UnixNano())
		}
		if o.only, err = parseChaosOnly(*chaosOnly); err == nil {
			err = runChaos(*bin, o)
		}
	} else if *syncBench {
		sc := *scale
		if !isFlagSet("scale") {
			sc = 10
		}
		err = runSync(*bin, sc, *rounds, *syncSeconds, *runtime, *image)
	} else if *archive {
		err = runArchive(*bin, *archiveSeconds, 4)
	} else if *hl {
		err = runHealth(*bin, *hlClients, *hlDur)
	} else if *soak > 0 {
		err = runSoak(*bin, *soak, *runtime, *image)
	} else if *fo {
		r := *runs
		if !isFlagSet("runs") {
			r = 5
		}
		err = runFailover(*bin, r, splitList(*tools), *image)
	} else if *bk {
		err = runBackup(*bin, *alt, *floor, *scale, *rounds, *runtime, *image, *walCompression)
	} else if *ha {
		err = runHA(*bin, *scale, *runtime, *image)
	} else {
		err = run(*bin, *runs, *runtime, *image)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func isFlagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func run(bin string, runs int, runtime, image string) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	sc, err := newScratch("pgha-bench", "bench", 4, runtime, image)
	if err != nil {
		return err
	}
	defer sc.remove()
	dir, ports, file, name, rtBlock := sc.dir, sc.ports, sc.file, sc.name, sc.rtBlock
	src := fmt.Sprintf(`cluster %q {
  primary = "db1"
  postgres {
    password = env("BENCH_PW")
  }
%s  node "db1" {
    port = %d
  }
  node "db2" {
    port = %d
    slot = "db2"
  }
  node "db3" {
    port = %d
    slot = "db3"
  }
  replication {
    password = env("BENCH_PW")
  }
  catalog "redis" {
    address = "127.0.0.1:%d"
    managed = true
  }
}
`, name, rtBlock, ports[0], ports[1], ports[2], ports[3])
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		return err
	}
	env := append(os.Environ(), "BENCH_PW=bench-only-password", "PGPASSWORD=bench-only-password")
	pgha := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, append([]string{args[0], "-f", file}, args[1:]...)...)
		cmd.Env = env
		return cmd
	}
	fmt.Printf("runtime %s: apply from nothing to a converged three-node cluster with a managed Redis...\n", runtime)
	start := time.Now()
	if out, err := pgha("apply", "-auto-approve").CombinedOutput(); err != nil {
		pgha("destroy", "-auto-approve", "-delete-volumes").Run()
		return fmt.Errorf("apply: %v\n%s", err, out)
	}
	applyTook := time.Since(start)
	defer pgha("destroy", "-auto-approve", "-delete-volumes").Run()
	if out, err := pgha("plan", "-detailed-exitcode").CombinedOutput(); err != nil {
		return fmt.Errorf("the cluster did not converge: %v\n%s", err, out)
	}

	psql, err := findPsql()
	if err != nil {
		return err
	}
	var script strings.Builder
	baselineName := "baseline: shell check (psql x3 + redis-cli)"
	if runtime == "docker" {
		// What compose-based scripts do: docker exec psql in each container.
		baselineName = "baseline: shell check (docker exec psql x3 + redis-cli)"
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(&script, "docker exec -e PGPASSWORD=bench-only-password -u postgres pgha-%s-db%d /usr/lib/postgresql/17/bin/psql -h 127.0.0.1 -Atc 'select pg_is_in_recovery(), pg_last_wal_replay_lsn()' >/dev/null\n", name, i)
		}
	} else {
		for _, p := range ports[:3] {
			fmt.Fprintf(&script, "%s -h 127.0.0.1 -p %d -U postgres -d postgres -Atc 'select pg_is_in_recovery(), pg_last_wal_replay_lsn()' >/dev/null\n", psql, p)
		}
	}
	// The catalog speaks TLS and wants its password, as pgha's client does.
	tlsDir := filepath.Join(dir, "data", "tls")
	fmt.Fprintf(&script, "REDISCLI_AUTH=$(cat %s) redis-cli --tls --cacert %s/ca.crt --cert %s/pgha.crt --key %s/pgha.key -p %d ping | grep -q PONG\n",
		filepath.Join(dir, ".secrets", "catalog"), tlsDir, tlsDir, tlsDir, ports[3])
	baseline := func() *exec.Cmd {
		cmd := exec.Command("bash", "-ec", script.String())
		cmd.Env = env
		return cmd
	}

	target := 100 * time.Millisecond
	if runtime == "docker" {
		target = 150 * time.Millisecond
	}
	rows := []row{
		{name: "pgha plan (observe 3 nodes + Redis, diff, render)", target: target, cmd: func() *exec.Cmd { return pgha("plan", "-detailed-exitcode") }},
		{name: "pgha status", cmd: func() *exec.Cmd { return pgha("status") }},
		{name: baselineName, cmd: baseline},
	}
	for i := range rows {
		if err := rows[i].measure(runs); err != nil {
			return err
		}
	}
	fmt.Printf("\nruntime %s: apply from nothing to converged took %s\n", runtime, applyTook.Round(time.Millisecond))
	fmt.Printf("%d runs each, wall time per command (process start included)\n\n", runs)
	fmt.Printf("%-58s %9s %9s %9s  %s\n", "command", "median", "p90", "min", "target")
	for _, r := range rows {
		target := "-"
		if r.target > 0 {
			verdict := "met"
			if r.median > r.target {
				verdict = "MISSED"
			}
			target = fmt.Sprintf("<= %s (%s)", r.target, verdict)
		}
		fmt.Printf("%-58s %9s %9s %9s  %s\n", r.name, ms(r.median), ms(r.p90), ms(r.min), target)
	}
	return nil
}

type row struct {
	name             string
	target           time.Duration
	cmd              func() *exec.Cmd
	median, p90, min time.Duration
}

func (r *row) measure(runs int) error {
	var d []time.Duration
	for range runs + 2 { // two warm-up runs
		start := time.Now()
		out, err := r.cmd().CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v\n%s", r.name, err, out)
		}
		d = append(d, time.Since(start))
	}
	d = d[2:]
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	r.median, r.p90, r.min = d[len(d)/2], d[len(d)*9/10], d[0]
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// scratch is a bench run's cluster: a temporary directory (readable by
// the PostgreSQL user the local runtime runs as) holding its cluster.hcl,
// free ports, and the cluster's name and runtime block. On Docker the
// name carries the first port, so that runs never share containers.
type scratch struct {
	dir, file, name, rtBlock string
	ports                    []int
}

func newScratch(tmpPrefix, name string, nports int, runtime, image string) (*scratch, error) {
	dir, err := os.MkdirTemp("", tmpPrefix)
	if err != nil {
		return nil, err
	}
	sc := &scratch{dir: dir, file: filepath.Join(dir, "cluster.hcl"), name: name}
	if err := os.Chmod(dir, 0o755); err != nil {
		sc.remove()
		return nil, err
	}
	if sc.ports, err = freePorts(nports); err != nil {
		sc.remove()
		return nil, err
	}
	if runtime == "docker" {
		sc.name = fmt.Sprintf("%s%d", name, sc.ports[0])
		sc.rtBlock = fmt.Sprintf("  runtime \"docker\" {\n    image = %q\n    redis_image = %q\n  }\n", image, image)
	}
	return sc, nil
}

// remove deletes the run's temporary directory: bench data only.
func (sc *scratch) remove() { os.RemoveAll(sc.dir) }

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func findPsql() (string, error) {
	if p, err := exec.LookPath("psql"); err == nil {
		return p, nil
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	if len(m) == 0 {
		return "", fmt.Errorf("psql not found; run `make setup`")
	}
	sort.Strings(m)
	return m[len(m)-1], nil
}
