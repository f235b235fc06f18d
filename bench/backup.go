package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgha/pgha/plan"
)

// runBackup compares, on one pgbench data set and in one run, pgha's full
// backups (gzip, zstd) with pg_basebackup's own compression and with
// pg_dumpall | gzip: time and stored size.
func runBackup(bin string, scale int) error {
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
	write := func(compression string) error {
		return os.WriteFile(file, []byte(fmt.Sprintf(`cluster "benchbk" {
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
  catalog "redis" {
    address = "127.0.0.1:%d"
    managed = true
  }
  backup {
    repository  = "./backups"
    compression = %q
  }
}
`, ports[0], ports[1], compression)), 0o644)
	}
	if err := write("gzip"); err != nil {
		return err
	}
	env := append(os.Environ(), "BENCH_PW=bench-only-password", "PGPASSWORD=bench-only-password")
	run := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %v: %v\n%s", name, args, err, out)
		}
		return nil
	}
	defer run(bin, "destroy", "-auto-approve", "-f", file)
	fmt.Println("backup: one local node and a managed Redis...")
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

	type result struct {
		name string
		took time.Duration
		size int64
	}
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
	for _, c := range []struct{ name, flag string }{{"pg_basebackup -Ft -z", "-z"}, {"pg_basebackup -Ft --compress=client-zstd", "--compress=client-zstd"}} {
		out := filepath.Join(dir, "bb-"+strings.Fields(c.flag)[0])
		if err := measure(c.name, dirSize(out), func() error {
			return run(basebackup, "-D", out, "-Ft", "-X", "fetch", "-c", "fast", c.flag, "-h", "127.0.0.1", "-p", fmt.Sprint(ports[0]), "-U", "replicator")
		}); err != nil {
			return err
		}
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

	fmt.Printf("\nFull backups of a pgbench scale-%d data set (local runtime), one run each\n\n", scale)
	fmt.Printf("%-44s %10s %12s\n", "method", "time", "stored")
	for _, r := range results {
		fmt.Printf("%-44s %10s %12s\n", r.name, r.took.Round(time.Millisecond), plan.Bytes(r.size))
	}
	ratio := func(a, b int) float64 { return results[a].took.Seconds() / results[b].took.Seconds() }
	fmt.Printf("\npgha gzip / pg_basebackup -z time: %.2fx (target <= 0.5x)\n", ratio(0, 2))
	fmt.Printf("pgha zstd / pg_basebackup client-zstd time: %.2fx (target <= 1.0x)\n", ratio(1, 3))
	return nil
}
