package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// runHA measures, on a two-node local cluster holding a pgbench data set:
// the write gap and lost commits of a switchover under a writing client;
// an unplanned failover from kill -9 of the primary to the first write
// that succeeds on the new primary (detection excluded: that is watch
// mode's); rejoining the old primary by pg_rewind versus re-cloning it.
// The hand-made scripts pgha replaces are printed beside them.
func runHA(bin string, scale int, runtime, image string) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	sc, err := newScratch("pgha-bench-ha", "benchha", 3, runtime, image)
	if err != nil {
		return err
	}
	defer sc.remove()
	dir, ports, file, name, rtBlock := sc.dir, sc.ports, sc.file, sc.name, sc.rtBlock
	writeFile := func(primary string) error {
		return os.WriteFile(file, []byte(fmt.Sprintf(`cluster %q {
  primary = %q
%s  postgres {
    password   = env("BENCH_PW")
  }
  node "db1" {
    port = %d
    slot = "db1"
  }
  node "db2" {
    port = %d
    slot = "db2"
  }
  replication {
    password = env("BENCH_PW")
  }
  failover {
    maximum_lag = "64MB"
  }
  catalog "redis" {
    address = "127.0.0.1:%d"
    managed = true
  }
}
`, name, primary, rtBlock, ports[0], ports[1], ports[2])), 0o644)
	}
	if err := writeFile("db1"); err != nil {
		return err
	}
	env := append(os.Environ(), "BENCH_PW=bench-only-password", "PGPASSWORD=bench-only-password")
	var lastOut string
	pgha := func(args ...string) error {
		cmd := exec.Command(bin, append([]string{args[0], "-f", file}, args[1:]...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		lastOut = string(out)
		if err != nil {
			return fmt.Errorf("pgha %v: %v\n%s", args, err, out)
		}
		return nil
	}
	defer func() {
		cmd := exec.Command(bin, "destroy", "-auto-approve", "-delete-volumes", "-f", file)
		cmd.Env = env
		_ = cmd.Run()
	}()
	fmt.Printf("ha: two %s nodes and a managed Redis...\n", runtime)
	if err := pgha("apply", "-auto-approve"); err != nil {
		return err
	}
	pgbench, err := findBin("pgbench")
	if err != nil {
		return err
	}
	fmt.Printf("ha: pgbench -i -s %d (about %d MB)...\n", scale, scale*15)
	init := exec.Command(pgbench, "-i", "-q", "-s", fmt.Sprint(scale), "-h", "127.0.0.1", "-p", fmt.Sprint(ports[0]), "-U", "postgres", "postgres")
	init.Env = env
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	ctx := context.Background()
	connect := func(port int) (*pgx.Conn, error) {
		// The cluster runs with TLS (the default): verify-full against its CA.
		ca := filepath.Join(dir, "data", "tls", "ca.crt")
		cfg, _ := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=verify-full sslrootcert=%s connect_timeout=1", port, ca))
		cfg.Password = "bench-only-password"
		return pgx.ConnectConfig(ctx, cfg)
	}
	c1, err := connect(ports[0])
	if err != nil {
		return err
	}
	if _, err := c1.Exec(ctx, "CREATE TABLE bench_writes (id bigint primary key, at timestamptz default clock_timestamp())"); err != nil {
		return err
	}
	// A database in steady state has checkpointed since its bulk load; the
	// load's WAL is not what a failover or rejoin is about.
	if _, err := c1.Exec(ctx, "CHECKPOINT"); err != nil {
		return err
	}
	c1.Close(ctx)
	// Let the standby catch up with the data set before measuring.
	if err := pgha("apply", "-auto-approve"); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)

	// 1. Switchover under a writing client.
	w := newBenchWriter(ctx, connect, ports[:2])
	time.Sleep(time.Second)
	if err := writeFile("db2"); err != nil {
		return err
	}
	start := time.Now()
	if err := pgha("apply", "-auto-approve"); err != nil {
		return err
	}
	swTook := time.Since(start)
	time.Sleep(time.Second)
	acked, gap := w.finish()
	c2, err := connect(ports[1])
	if err != nil {
		return err
	}
	var have int
	if err := c2.QueryRow(ctx, "SELECT count(*) FROM bench_writes WHERE id = ANY($1)", acked).Scan(&have); err != nil {
		return err
	}
	c2.Close(ctx)
	lost := len(acked) - have

	// 2. Unplanned failover: kill -9 of the primary (db2) until a write succeeds on db1.
	kill := exec.Command("docker", "kill", "pgha-"+name+"-db2")
	if runtime != "docker" {
		pid, err := os.ReadFile(filepath.Join(dir, "data", "db2", "postmaster.pid"))
		if err != nil {
			return err
		}
		kill = exec.Command("kill", "-9", strings.SplitN(string(pid), "\n", 2)[0])
	}
	start = time.Now()
	if out, err := kill.CombinedOutput(); err != nil {
		return fmt.Errorf("kill the primary: %v %s", err, out)
	}
	if err := pgha("failover", "-auto-approve"); err != nil {
		return err
	}
	for {
		c, err := connect(ports[0])
		if err == nil {
			_, err = c.Exec(ctx, "INSERT INTO bench_writes (id) VALUES (-1)")
			c.Close(ctx)
			if err == nil {
				break
			}
		}
		if time.Since(start) > 30*time.Second {
			return fmt.Errorf("no write succeeded on db1 within 30s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	foTook := time.Since(start)

	// 3. Rejoin the old primary (including its restart and streaming): by
	// pg_rewind, or without it when its WAL ends at the fork (the writer
	// stopped before the kill, so here it does). pg_rewind copies every
	// WAL segment in the source's pg_wal whole (PostgreSQL 13-18), so
	// that directory's size is printed beside it.
	// The 1-minute load average is printed too: on shared cores the
	// rewind's time follows the machine's load more than its bytes.
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Fields(string(b))[0]
	}
	var walFiles, walBytes int64
	if c, err := connect(ports[0]); err == nil {
		_ = c.QueryRow(ctx, "SELECT count(*), coalesce(sum(size), 0) FROM pg_ls_waldir()").Scan(&walFiles, &walBytes)
		c.Close(ctx)
	}
	if err := writeFile("db1"); err != nil {
		return err
	}
	start = time.Now()
	if err := pgha("failback", "-auto-approve"); err != nil {
		return err
	}
	fbTook := time.Since(start)
	// The rejoin itself is the standby.rejoin action (stop, fork check,
	// pg_rewind or not, start, streaming); pgha failback as a whole also
	// observes, plans and records, and is printed on its own row.
	rwSteps, rwTook, err := rejoinSteps(lastOut, "db2")
	if err != nil {
		return err
	}

	// 3b. A former primary that wrote what its standby never received:
	// pg_rewind must undo it. db2 (standby) stops receiving (an
	// ALTER SYSTEM that clears primary_conninfo, reset before the
	// failover), db1 commits rows only it has and is killed, db2 is
	// promoted, and db1 is rejoined.
	dvTook, dvSteps, err := divergedRejoin(ctx, connect, ports, func(node string) *exec.Cmd {
		if runtime == "docker" {
			return exec.Command("docker", "kill", "pgha-"+name+"-"+node)
		}
		pid, err := os.ReadFile(filepath.Join(dir, "data", node, "postmaster.pid"))
		if err != nil {
			return exec.Command("false")
		}
		return exec.Command("kill", "-9", strings.SplitN(string(pid), "\n", 2)[0])
	}, writeFile, pgha, &lastOut)
	if err != nil {
		return err
	}

	// 4. The standby (db1 now) re-cloned instead: data directory lost, pgha clones it.
	stop := exec.Command(bin, "plan", "-f", file) // warm; no change expected
	stop.Env = env
	_ = stop.Run()
	if runtime == "docker" {
		for _, args := range [][]string{{"rm", "-f", "pgha-" + name + "-db1"}, {"volume", "rm", "pgha-" + name + "-db1"}} {
			if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("docker %v: %v %s", args, err, out)
			}
		}
	} else if err := stopAndWipe(filepath.Join(dir, "data", "db1")); err != nil {
		return err
	}
	start = time.Now()
	if err := pgha("apply", "-auto-approve"); err != nil {
		return err
	}
	rcTook := time.Since(start)

	fmt.Printf("\nHA operations on a pgbench scale-%d data set (%s runtime)\n\n", scale, runtime)
	fmt.Printf("%-58s %12s  %-14s %s\n", "measure", "pgha", "target", "scripts pgha replaces")
	row := func(name string, d time.Duration, target time.Duration, baseline string) {
		verdict := "met"
		if d > target {
			verdict = "MISSED"
		}
		fmt.Printf("%-58s %12s  %-14s %s\n", name, d.Round(time.Millisecond), fmt.Sprintf("<= %s %s", target, verdict), baseline)
	}
	row("unplanned failover: kill -9 -> first write on new primary", foTook, time.Second, "failover.sh: 15-20 s")
	row("switchover: longest write gap seen by the client", gap, time.Second, "stop + promote by hand")
	fmt.Printf("%-58s %12d  %-14s %s\n", "switchover: acknowledged commits lost", lost, "= 0", fmt.Sprintf("(%d commits acknowledged; apply took %s)", len(acked), swTook.Round(time.Millisecond)))
	row("rejoin old primary (incl. restart, streaming)", rwTook, 1500*time.Millisecond, "failback.sh re-clone: 30-45 s")
	fmt.Printf("%-58s %12s  %-14s %s\n", "  of which", "", "", strings.Join(rwSteps, ", "))
	fmt.Printf("%-58s %12s  %-14s %s\n", "  pgha failback as a whole (observe, plan, rejoin, record)", fbTook.Round(time.Millisecond), "", "")
	fmt.Printf("%-58s %12s  %-14s %s\n", "  source's pg_wal when the rejoin began", fmt.Sprintf("%d MB", walBytes>>20), "", fmt.Sprintf("(%d files, all copied by a pg_rewind; load average %s)", walFiles, load))
	row("rejoin a diverged former primary (pg_rewind, restart, streaming)", dvTook, 1500*time.Millisecond, "")
	fmt.Printf("%-58s %12s  %-14s %s\n", "  of which", "", "", strings.Join(dvSteps, ", "))
	fmt.Printf("%-58s %12s  %-14s %s\n", "rejoin by re-clone (pg_basebackup) instead", rcTook.Round(time.Millisecond), "-", "")
	return nil
}

// rejoinSteps picks the timed steps of a standby.rejoin[node] out of
// pgha's output, and the action's own time.
func rejoinSteps(out, node string) ([]string, time.Duration, error) {
	var steps []string
	took := time.Duration(-1)
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(l, "      ") && (strings.HasPrefix(t, "fork check") || strings.HasPrefix(t, "wal_keep_size") || strings.Contains(t, "needs no pg_rewind") || strings.HasPrefix(t, "checkpoint on") || strings.HasPrefix(t, "pg_rewind") || strings.HasPrefix(t, "start and stream") || strings.HasPrefix(t, "re-clone")) {
			steps = append(steps, t)
		}
		if _, d, ok := strings.Cut(t, "standby.rejoin["+node+"]: done in "); ok {
			if v, err := time.ParseDuration(d); err == nil {
				took = v
			}
		}
	}
	if took < 0 {
		return nil, 0, fmt.Errorf("pgha did not report standby.rejoin[%s]:\n%s", node, out)
	}
	return steps, took, nil
}

// divergedRejoin makes db1 (primary) write what db2 (its standby) never
// receives, kills db1, fails over to db2 and times the rejoin of db1,
// which needs pg_rewind.
func divergedRejoin(ctx context.Context, connect func(int) (*pgx.Conn, error), ports []int, kill func(node string) *exec.Cmd,
	writeFile func(string) error, pgha func(...string) error, lastOut *string) (time.Duration, []string, error) {
	c2, err := connect(ports[1])
	if err != nil {
		return 0, nil, err
	}
	defer c2.Close(ctx)
	for _, q := range []string{"ALTER SYSTEM SET primary_conninfo = ''", "SELECT pg_reload_conf()"} {
		if _, err := c2.Exec(ctx, q); err != nil {
			return 0, nil, fmt.Errorf("db2: %s: %w", q, err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := c2.QueryRow(ctx, "SELECT count(*) FROM pg_stat_wal_receiver").Scan(&n); err != nil {
			return 0, nil, err
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, nil, fmt.Errorf("db2 still receives WAL 10 s after primary_conninfo was cleared")
		}
	}
	c1, err := connect(ports[0])
	if err != nil {
		return 0, nil, err
	}
	_, err = c1.Exec(ctx, "INSERT INTO bench_writes (id) SELECT -1000 - g FROM generate_series(1, 100) g")
	c1.Close(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("write on db1 alone: %w", err)
	}
	if out, err := kill("db1").CombinedOutput(); err != nil {
		return 0, nil, fmt.Errorf("kill db1: %v %s", err, out)
	}
	for _, q := range []string{"ALTER SYSTEM RESET primary_conninfo", "SELECT pg_reload_conf()"} {
		if _, err := c2.Exec(ctx, q); err != nil {
			return 0, nil, fmt.Errorf("db2: %s: %w", q, err)
		}
	}
	if err := pgha("failover", "-auto-approve"); err != nil {
		return 0, nil, err
	}
	if err := writeFile("db2"); err != nil {
		return 0, nil, err
	}
	if err := pgha("failback", "-auto-approve"); err != nil {
		return 0, nil, err
	}
	steps, took, err := rejoinSteps(*lastOut, "db1")
	if err != nil {
		return 0, nil, err
	}
	if !strings.Contains(strings.Join(steps, " "), "pg_rewind") {
		return 0, nil, fmt.Errorf("db1 wrote after the fork, yet was rejoined without pg_rewind: %v", steps)
	}
	// What pg_rewind copied is, within a segment or two, db1's pg_wal now.
	if c, err := connect(ports[0]); err == nil {
		var files, bytes int64
		if c.QueryRow(ctx, "SELECT count(*), coalesce(sum(size), 0) FROM pg_ls_waldir()").Scan(&files, &bytes) == nil {
			steps = append(steps, fmt.Sprintf("db1's pg_wal after it: %d MB in %d files", bytes>>20, files))
		}
		c.Close(ctx)
	}
	return took, steps, nil
}

func stopAndWipe(dataDir string) error {
	pgctl, err := findBin("pg_ctl")
	if err != nil {
		return err
	}
	cmd := exec.Command("su", "postgres", "-s", "/bin/sh", "-c", pgctl+" -D "+dataDir+" -m fast -w stop")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("stop %s: %v\n%s", dataDir, err, out)
	}
	return os.RemoveAll(dataDir)
}

func findBin(name string) (string, error) {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(m) == 0 {
		return exec.LookPath(name)
	}
	return m[len(m)-1], nil
}

// benchWriter inserts sequential ids into whichever node accepts writes and
// records the longest time between two acknowledged commits.
type benchWriter struct {
	mu    sync.Mutex
	acked []int64
	gap   time.Duration
	stop  chan struct{}
	done  chan struct{}
}

func newBenchWriter(ctx context.Context, connect func(int) (*pgx.Conn, error), ports []int) *benchWriter {
	w := &benchWriter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var conn *pgx.Conn
		last := time.Now()
		var id int64
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			if conn == nil {
				for _, p := range ports {
					c, err := connect(p)
					if err != nil {
						continue
					}
					var rec bool
					if c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec) == nil && !rec {
						conn = c
						break
					}
					c.Close(ctx)
				}
				if conn == nil {
					time.Sleep(2 * time.Millisecond)
					continue
				}
			}
			id++
			if _, err := conn.Exec(ctx, "INSERT INTO bench_writes (id) VALUES ($1)", id); err != nil {
				conn.Close(ctx)
				conn = nil
				continue
			}
			now := time.Now()
			w.mu.Lock()
			w.acked = append(w.acked, id)
			w.gap = max(w.gap, now.Sub(last))
			w.mu.Unlock()
			last = now
		}
	}()
	return w
}

func (w *benchWriter) finish() ([]int64, time.Duration) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.gap
}
