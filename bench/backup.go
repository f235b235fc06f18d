package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pgha/pgha/internal/bytesize"
)

// runBackup compares, on one pgbench data set and in one run, pgha's full
// backups (gzip, zstd) with pg_basebackup's own compression and with
// pg_dumpall | gzip (time and stored size), then an incremental after 5 %
// of the rows changed, and restores. On the docker runtime (PostgreSQL 17,
// block-level incrementals) the baselines are left out: the host's client
// programs are older than the server.
func runBackup(bin string, scale int, runtime, image string) error {
	docker := runtime == "docker"
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pgha-bench-backup")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	file := filepath.Join(dir, "cluster.hcl")
	rtBlock := ""
	if docker {
		rtBlock = fmt.Sprintf("  runtime \"docker\" {\n    image = %q\n    redis_image = %q\n  }\n", image, image)
	}
	write := func(compression string) error {
		return os.WriteFile(file, []byte(fmt.Sprintf(`cluster "benchbk" {
  primary = "db1"
  postgres {
    password = env("BENCH_PW")
  }
%s  node "db1" {
    port = %d
  }
  replication {
    password = env("BENCH_PW")
  }
  catalog "redis" {
    address = "127.0.0.1:%d"
    managed = true
  }
  backup {
    repository  = "./backups"
    compression = %q
  }
}
`, rtBlock, ports[0], ports[1], compression)), 0o644)
	}
	if err := write("gzip"); err != nil {
		return err
	}
	env := append(os.Environ(), "BENCH_PW=bench-only-password", "PGPASSWORD=bench-only-password")
	// libpq clients verify the cluster's certificates; the replication
	// baseline presents pgha's own, as replication lines require (pgha's
	// backups pay for TLS too).
	tlsDir := filepath.Join(dir, "data", "tls")
	env = append(env, "PGSSLMODE=verify-full", "PGSSLROOTCERT="+tlsDir+"/ca.crt", "PGSSLCERT="+tlsDir+"/pgha.crt", "PGSSLKEY="+tlsDir+"/pgha.key")
	run := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %v: %v\n%s", name, args, err, out)
		}
		return nil
	}
	defer run(bin, "destroy", "-auto-approve", "-delete-volumes", "-f", file)
	fmt.Printf("backup: one %s node and a managed Redis...\n", runtime)
	if err := run(bin, "apply", "-auto-approve", "-f", file); err != nil {
		return err
	}
	pgbench, err := findBin("pgbench")
	if err != nil {
		return err
	}
	fmt.Printf("backup: pgbench -i -s %d...\n", scale)
	conn := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(ports[0]), "-U", "postgres"}
	if err := run(pgbench, append(append([]string{"-i", "-q", "-s", fmt.Sprint(scale)}, conn...), "postgres")...); err != nil {
		return err
	}
	psql, _ := findBin("psql")
	_ = run(psql, append(conn, "-qc", "CHECKPOINT")...)

	var results []result
	measure := func(name string, size func() int64, f func() error) error {
		start := time.Now()
		if err := f(); err != nil {
			return err
		}
		results = append(results, result{name, time.Since(start), size()})
		return nil
	}
	dirSize := func(d string) func() int64 {
		return func() int64 {
			var n int64
			filepath.Walk(d, func(_ string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					n += fi.Size()
				}
				return nil
			})
			return n
		}
	}
	basebackup, err := findBin("pg_basebackup")
	if err != nil {
		return err
	}
	// Fulls and their baselines take turns, three rounds: on a shared
	// machine the medians say more than one run each.
	for round := 0; round < 3; round++ {
		for _, comp := range []string{"gzip", "zstd"} {
			if err := write(comp); err != nil {
				return err
			}
			repo := filepath.Join(dir, "backups")
			os.RemoveAll(repo)
			if err := measure("pgha backup ("+comp+")", dirSize(repo), func() error { return run(bin, "backup", "-f", file) }); err != nil {
				return err
			}
		}
		if docker {
			continue // the host's pg_basebackup is older than the server
		}
		for _, c := range []struct{ name, flag string }{{"pg_basebackup -Ft -z", "-z"}, {"pg_basebackup -Ft --compress=client-zstd", "--compress=client-zstd"}} {
			out := filepath.Join(dir, "bb-"+strings.Fields(c.flag)[0])
			os.RemoveAll(out)
			if err := measure(c.name, dirSize(out), func() error {
				return run(basebackup, "-D", out, "-Ft", "-X", "fetch", "-c", "fast", c.flag, "-h", "127.0.0.1", "-p", fmt.Sprint(ports[0]), "-U", "replicator")
			}); err != nil {
				return err
			}
		}
	}
	if !docker {
		untar := filepath.Join(dir, "untar")
		os.MkdirAll(untar, 0o700)
		if err := measure("tar -xzf of pg_basebackup -z (restore baseline)", func() int64 { return 0 }, func() error {
			return run("tar", "-xzf", filepath.Join(dir, "bb--z", "base.tar.gz"), "-C", untar)
		}); err != nil {
			return err
		}
		dumpall, err := findBin("pg_dumpall")
		if err != nil {
			return err
		}
		dump := filepath.Join(dir, "dumpall.sql.gz")
		if err := measure("pg_dumpall | gzip", func() int64 { fi, _ := os.Stat(dump); return fi.Size() }, func() error {
			cmd := exec.Command("sh", "-c", fmt.Sprintf("%s -h 127.0.0.1 -p %d -U postgres | gzip > %s", dumpall, ports[0], dump))
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("pg_dumpall: %v %s", err, out)
			}
			return nil
		}); err != nil {
			return err
		}

	}
	// An incremental after about 5 % of the rows changed (a contiguous
	// range, as a day's writes to a table mostly are), against the zstd
	// full it builds on.
	repo := filepath.Join(dir, "backups")
	var fullSize int64
	for _, r := range results {
		if r.name == "pgha backup (zstd)" {
			fullSize = r.size
		}
	}
	accounts := scale * 100000
	if err := run(psql, append(conn, "-qc", fmt.Sprintf("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= %d", accounts/20))...); err != nil {
		return err
	}
	_ = run(psql, append(conn, "-qc", "CHECKPOINT")...) // as before the fulls: both start from clean buffers
	if err := measure("pgha backup -type incremental (zstd, 5% rows)", func() int64 { return dirSize(repo)() - fullSize }, func() error {
		return run(bin, "backup", "-type", "incremental", "-f", file)
	}); err != nil {
		return err
	}
	ids, err := backupIDs(env, bin, file)
	if err != nil {
		return err
	}
	restores := []struct{ name, id, how string }{
		{"pgha restore full (zstd, extract)", ids["full"], "restore"},
		{"pgha verify -restore incremental (extract, replay, start)", ids["incremental"], "verify"},
	}
	if docker {
		restores = restores[1:]
		restores[0].name = "pgha verify -restore incremental (combine, start)"
	}
	for _, r := range restores {
		target := filepath.Join(dir, "restore-"+r.how)
		args := []string{"restore", "-f", file, "-target-dir", target, r.id}
		if r.how == "verify" {
			args = []string{"backup", "verify", "-restore", "-f", file, r.id}
		}
		if err := measure(r.name, func() int64 { return 0 }, func() error { return run(bin, args...) }); err != nil {
			return err
		}
	}
	printBackupTable(results, scale, runtime)
	return nil
}

type result struct {
	name string
	took time.Duration
	size int64
}

func printBackupTable(results []result, scale int, runtime string) {
	// One row per method: the median time of its runs, its stored size.
	var order []string
	runs := map[string][]time.Duration{}
	size := map[string]int64{}
	for _, r := range results {
		if _, ok := runs[r.name]; !ok {
			order = append(order, r.name)
		}
		runs[r.name] = append(runs[r.name], r.took)
		size[r.name] = r.size
	}
	median := func(name string) time.Duration {
		d := slices.Clone(runs[name])
		slices.Sort(d)
		return d[len(d)/2]
	}
	fmt.Printf("\nBackups of a pgbench scale-%d data set (%s runtime); fulls and their baselines take turns, median of their runs\n\n", scale, runtime)
	fmt.Printf("%-58s %5s %10s %12s\n", "method", "runs", "time", "stored")
	for _, name := range order {
		st := bytesize.Format(size[name])
		if size[name] == 0 {
			st = "-"
		}
		fmt.Printf("%-58s %5d %10s %12s\n", name, len(runs[name]), median(name).Round(time.Millisecond), st)
	}
	ratio := func(a, b string) float64 { return median(a).Seconds() / median(b).Seconds() }
	incr, full := "pgha backup -type incremental (zstd, 5% rows)", "pgha backup (zstd)"
	fmt.Println()
	if _, ok := runs["pg_basebackup -Ft -z"]; ok {
		fmt.Printf("pgha gzip / pg_basebackup -z time: %.2fx (target <= 0.5x)\n", ratio("pgha backup (gzip)", "pg_basebackup -Ft -z"))
		fmt.Printf("pgha zstd / pg_basebackup client-zstd time: %.2fx (target <= 1.0x)\n", ratio(full, "pg_basebackup -Ft --compress=client-zstd"))
	}
	fmt.Printf("pgha incremental / full (zstd): time %.0f%%, size %.0f%% (target <= 20%% each)\n",
		100*ratio(incr, full), 100*float64(size[incr])/float64(max(size[full], 1)))
}

// backupIDs returns the newest backup ID of each type.
func backupIDs(env []string, bin, file string) (map[string]string, error) {
	cmd := exec.Command(bin, "backup", "list", "-json", "-f", file)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("backup list: %v", err)
	}
	var l struct {
		Backups []struct{ ID, Type string }
	}
	if err := json.Unmarshal(out, &l); err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for _, b := range l.Backups { // newest first
		if ids[b.Type] == "" {
			ids[b.Type] = b.ID
		}
	}
	return ids, nil
}
