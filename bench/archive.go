package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/state"
)

// runArchive measures the continuous WAL archive's delay: for probe
// commits made every 50 ms while pgbench writes, the time from the
// commit's return (its LSN read with pg_current_wal_lsn() right after)
// until `pgha archive` has made a position at or past it durable in the
// repository (its "archive stored" log line, written once the partial
// segment and the status object are synced). One local node; one row per
// compression, at the default flush (200ms). Target: p99 <= 1 s.
func runArchive(bin string, seconds, clients int) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	pgbench, err := findBin("pgbench")
	if err != nil {
		return err
	}
	var rows []archiveRow
	for _, c := range []struct{ comp, load string }{{"zstd", "tpcb"}, {"gzip", "tpcb"}, {"zstd", "bulk"}} {
		r, err := archiveRun(bin, pgbench, c.comp, c.load, seconds, clients)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	fmt.Printf("\nWAL archive delay: commit (pg_current_wal_lsn after it) -> durable in the repository, one local node,\n")
	fmt.Printf("pgbench -c %d -j 2 for %d s per row (tpcb: its default transaction; bulk: INSERT of 2000 rows of 100 bytes),\n", clients, seconds)
	fmt.Printf("a probe commit every 50 ms; flush = 200ms (the default)\n\n")
	fmt.Printf("%-18s %8s %8s %9s %9s %9s %10s %9s  %s\n", "compression, load", "probes", "tps", "median", "p90", "p99", "max", "WAL MB/s", "target p99 <= 1 s")
	for _, r := range rows {
		fmt.Printf("%-18s %8d %8.0f %9s %9s %9s %10s %9.1f  %s\n", r.comp+", "+r.load, len(r.delays), r.tps, ms(pct(r.delays, 50)), ms(pct(r.delays, 90)), ms(pct(r.delays, 99)),
			ms(pct(r.delays, 100)), r.walMBs, verdict(pct(r.delays, 99) <= time.Second))
	}
	return nil
}

type archiveRow struct {
	comp   string
	load   string
	delays []time.Duration
	tps    float64
	walMBs float64
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func archiveRun(bin, pgbench, comp, loadKind string, seconds, clients int) (archiveRow, error) {
	row := archiveRow{comp: comp, load: loadKind}
	dir, err := os.MkdirTemp("", "pgha-bench-archive")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return row, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return row, err
	}
	file := filepath.Join(dir, "cluster.hcl")
	src := fmt.Sprintf(`cluster "bencharchive" {
  primary = "db1"
  postgres {
    password = env("BENCH_PW")
  }
  node "db1" {
    port = %d
  }
  replication {
    password = env("BENCH_PW")
  }
  backup {
    repository  = "./backups"
    compression = %q
    archive {}
  }
}
`, ports[0], comp)
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		return row, err
	}
	env := append(os.Environ(), "BENCH_PW=bench-only-password", "PGPASSWORD=bench-only-password")
	// Clients verify the cluster's certificates and present pgha's, as
	// the backup benchmark's do.
	tlsDir := filepath.Join(dir, "data", "tls")
	tlsParams := fmt.Sprintf("sslmode=verify-full sslrootcert=%s/ca.crt sslcert=%s/pgha.crt sslkey=%s/pgha.key", tlsDir, tlsDir, tlsDir)
	env = append(env, "PGSSLMODE=verify-full", "PGSSLROOTCERT="+tlsDir+"/ca.crt", "PGSSLCERT="+tlsDir+"/pgha.crt", "PGSSLKEY="+tlsDir+"/pgha.key")
	pgha := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, append([]string{args[0], "-f", file}, args[1:]...)...)
		cmd.Env, cmd.Dir = env, dir
		return cmd
	}
	fmt.Printf("archive (%s): one local node...\n", comp)
	if out, err := pgha(context.Background(), "apply", "-auto-approve").CombinedOutput(); err != nil {
		pgha(context.Background(), "destroy", "-auto-approve").Run()
		return row, fmt.Errorf("apply: %v\n%s", err, out)
	}
	defer pgha(context.Background(), "destroy", "-auto-approve").Run()
	conn := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(ports[0]), "-U", "postgres"}
	init := exec.Command(pgbench, append(append([]string{"-i", "-q", "-s", "10"}, conn...), "postgres")...)
	init.Env = env
	if out, err := init.CombinedOutput(); err != nil {
		return row, fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}

	// The receiver, logging each durable position.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ar := pgha(ctx, "archive", "-log-format", "json", "-v")
	stderr, err := ar.StderrPipe()
	if err != nil {
		return row, err
	}
	if err := ar.Start(); err != nil {
		return row, err
	}
	defer func() { cancel(); _ = ar.Wait() }()
	var durable atomic.Uint64
	var mu sync.Mutex
	moved := sync.NewCond(&mu)
	var logTail []string
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m struct {
				Msg string `json:"msg"`
				LSN string `json:"lsn"`
			}
			line := sc.Text()
			if json.Unmarshal([]byte(line), &m) != nil || m.Msg != "archive stored" {
				mu.Lock()
				logTail = append(logTail, line)
				mu.Unlock()
				continue
			}
			if l, err := state.ParseLSN(m.LSN); err == nil {
				mu.Lock()
				if uint64(l) > durable.Load() {
					durable.Store(uint64(l))
				}
				moved.Broadcast()
				mu.Unlock()
			}
		}
	}()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres password=bench-only-password %s", ports[0], tlsParams))
	if err != nil {
		return row, err
	}
	probe, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return row, err
	}
	defer probe.Close(context.Background())
	if _, err := probe.Exec(ctx, "CREATE TABLE IF NOT EXISTS archive_probe (at timestamptz)"); err != nil {
		return row, err
	}
	// Wait until the receiver streams.
	deadline := time.Now().Add(30 * time.Second)
	for durable.Load() == 0 {
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			return row, fmt.Errorf("pgha archive stored nothing within 30 s:\n%s", strings.Join(logTail, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	startLSN := currentWAL(ctx, probe)

	args := []string{"-c", fmt.Sprint(clients), "-j", "2", "-T", fmt.Sprint(seconds)}
	if loadKind == "bulk" {
		if _, err := probe.Exec(ctx, "CREATE TABLE archive_bulk (id int, pad text)"); err != nil {
			return row, err
		}
		script := filepath.Join(dir, "bulk.sql")
		if err := os.WriteFile(script, []byte("INSERT INTO archive_bulk SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g;\n"), 0o644); err != nil {
			return row, err
		}
		args = append(args, "-n", "-f", script)
	}
	load := exec.Command(pgbench, append(append(args, conn...), "postgres")...)
	load.Env = env
	var loadOut []byte
	loadDone := make(chan error, 1)
	go func() {
		var err error
		loadOut, err = load.CombinedOutput()
		loadDone <- err
	}()
	fmt.Printf("archive (%s, %s): pgbench -c %d for %d s, probing...\n", comp, loadKind, clients, seconds)
	var wg sync.WaitGroup
	var dmu sync.Mutex
	tick := time.NewTicker(50 * time.Millisecond)
	end := time.Now().Add(time.Duration(seconds) * time.Second)
	var probeErr error
	for time.Now().Before(end) {
		<-tick.C
		if _, err := probe.Exec(ctx, "INSERT INTO archive_probe VALUES (now())"); err != nil {
			probeErr = err
			break
		}
		committed := time.Now()
		lsn := currentWAL(ctx, probe)
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			for durable.Load() < uint64(lsn) && time.Since(committed) < 30*time.Second {
				moved.Wait()
			}
			mu.Unlock()
			d := time.Since(committed)
			dmu.Lock()
			row.delays = append(row.delays, d)
			dmu.Unlock()
		}()
	}
	tick.Stop()
	lerr := <-loadDone
	endLSN := currentWAL(ctx, probe)
	// Wake the last waiters as positions keep coming.
	for range 50 {
		if _, err := probe.Exec(ctx, "INSERT INTO archive_probe VALUES (now())"); err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	if probeErr != nil {
		return row, fmt.Errorf("probe: %w", probeErr)
	}
	if lerr != nil {
		return row, fmt.Errorf("pgbench: %v\n%s", lerr, tail(string(loadOut), 5))
	}
	if m := regexp.MustCompile(`tps = ([0-9.]+)`).FindStringSubmatch(string(loadOut)); m != nil {
		fmt.Sscanf(m[1], "%f", &row.tps)
	}
	row.walMBs = float64(endLSN-startLSN) / float64(seconds) / (1 << 20)
	return row, nil
}

func currentWAL(ctx context.Context, c *pgx.Conn) state.LSN {
	var s string
	if err := c.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		return 0
	}
	l, _ := state.ParseLSN(s)
	return l
}
