package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgha/pgha/internal/bytesize"
)

// runBackup compares pgha's backups, on one pgbench data set and in one
// run, like for like with what its users would pick instead (issue 13):
//
//   - full, zstd level 1 on every core: pgha beside pg_basebackup
//     --compress=client-zstd:level=1,workers=N and beside pgBackRest
//     (compress-type zst, level 1, process-max N, its own WAL archive);
//   - full, gzip level 1 on every core: pgha beside pg_basebackup -Ft to
//     stdout through pigz -p N -1;
//   - incremental after 5 % of pgbench_accounts' rows changed: pgha beside
//     pgBackRest's incr, and against pgha's own full;
//   - restore of the zstd full: pgha restore beside zstd -d | tar -x of
//     pg_basebackup's tar and pgBackRest restore.
//
// Every tool runs once per round, in turn, so that the load other work puts
// on the machine falls on all of them alike; the table shows medians. On
// the docker runtime (PostgreSQL 17, block-level incrementals) only pgha
// runs: the host's client programs and pgBackRest are older than the
// server and cannot reach its data directory.
//
// walCompression, when set, is the server's wal_compression (for the
// WAL-based incremental of PostgreSQL 15/16, whose size is mostly the
// full-page images written after a checkpoint).
func runBackup(bin, alt string, floor bool, scale, rounds int, rt, image, walCompression string) error {
	docker := rt == "docker"
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pgha-bench-backup")
	if err != nil {
		return err
	}
	defer func() {
		if os.Getenv("BENCH_KEEP") != "" { // for debugging a baseline: its logs stay
			fmt.Println("kept", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	cores := runtime.NumCPU()
	b := &bkBench{dir: dir, docker: docker, cores: cores, scale: scale, rounds: rounds, port: ports[0]}
	b.floor = floor
	if alt != "" {
		if b.alt, err = filepath.Abs(alt); err != nil {
			return err
		}
	}
	file := filepath.Join(dir, "cluster.hcl")
	b.file = file
	sock := filepath.Join(dir, "sock")
	cred, err := postgresUser()
	if err != nil && !docker {
		return err
	}
	b.cred = cred
	rtBlock := ""
	if docker {
		rtBlock = fmt.Sprintf("  runtime \"docker\" {\n    image = %q\n    redis_image = %q\n  }\n", image, image)
	} else {
		// pgBackRest reaches PostgreSQL through a Unix socket only.
		if err := os.Mkdir(sock, 0o755); err != nil {
			return err
		}
		if err := os.Chown(sock, int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	archiveCommand := "/bin/true" // until pgBackRest's stanza exists
	b.write = func(compression string) error {
		params := ""
		if !docker {
			params += fmt.Sprintf("      unix_socket_directories = %q\n      archive_mode = \"on\"\n      archive_command = %q\n", sock, archiveCommand)
		}
		if walCompression != "" {
			params += fmt.Sprintf("      wal_compression = %q\n", walCompression)
		}
		if params != "" {
			params = "    parameters = {\n" + params + "    }\n"
		}
		return os.WriteFile(file, []byte(fmt.Sprintf(`cluster "benchbk" {
  primary = "db1"
  postgres {
    password = env("BENCH_PW")
%s  }
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
    level       = 1
  }
}
`, params, rtBlock, ports[0], ports[1], compression)), 0o644)
	}
	if err := b.write("zstd"); err != nil {
		return err
	}
	env := append(os.Environ(), "BENCH_PW=bench-only-password", "PGPASSWORD=bench-only-password")
	// libpq clients verify the cluster's certificates; the replication
	// baseline presents pgha's own, as replication lines require (pgha's
	// backups pay for TLS too).
	tlsDir := filepath.Join(dir, "data", "tls")
	env = append(env, "PGSSLMODE=verify-full", "PGSSLROOTCERT="+tlsDir+"/ca.crt", "PGSSLCERT="+tlsDir+"/pgha.crt", "PGSSLKEY="+tlsDir+"/pgha.key")
	b.env = env
	defer b.run(bin, "destroy", "-auto-approve", "-delete-volumes", "-f", file)
	fmt.Printf("backup: one %s node and a managed Redis...\n", rt)
	if err := b.run(bin, "apply", "-auto-approve", "-f", file); err != nil {
		return err
	}
	pgbench, err := findBin("pgbench")
	if err != nil {
		return err
	}
	b.psql, err = findBin("psql")
	if err != nil {
		return err
	}
	fmt.Printf("backup: pgbench -i -s %d...\n", scale)
	b.conn = []string{"-h", "127.0.0.1", "-p", fmt.Sprint(ports[0]), "-U", "postgres"}
	if err := b.run(pgbench, append(append([]string{"-i", "-q", "-s", fmt.Sprint(scale)}, b.conn...), "postgres")...); err != nil {
		return err
	}
	if !docker {
		if err := b.setupBaselines(); err != nil {
			return err
		}
		// Now pgBackRest's stanza exists: the server archives into it,
		// as a pgBackRest user's does (pgha's backups carry their WAL in
		// their tar and do not wait for the archiver).
		archiveCommand = fmt.Sprintf("pgbackrest --config=%s --stanza=bench archive-push %%p", b.brConf)
		if err := b.write("zstd"); err != nil {
			return err
		}
		if err := b.run(bin, "apply", "-auto-approve", "-f", file); err != nil {
			return err
		}
		if _, err := b.asPostgres("pgbackrest", "--config="+b.brConf, "--stanza=bench", "check"); err != nil {
			return err
		}
	}
	for round := range rounds {
		fmt.Printf("backup: round %d of %d...\n", round+1, rounds)
		if err := b.round(round, bin); err != nil {
			return err
		}
	}
	b.print(rt, walCompression)
	return nil
}

// bkBench is one backup benchmark's cluster, tools and measurements.
type bkBench struct {
	dir, file, psql string
	docker          bool
	cores, scale    int
	rounds, port    int
	env, conn       []string
	cred            *syscall.Credential
	write           func(compression string) error
	brConf          string // pgBackRest's configuration file
	results         []result
	cpu             time.Duration // of the commands run since measure began
	stream          time.Duration // pgha's own elapsed time of the backup it measured
	alt             string        // a second pgha binary whose fulls run beside (-pgha-alt)
	floor           bool          // also the server's uncompressed stream to /dev/null (-backup-floor)
}

type result struct {
	op, tool  string
	took, cpu time.Duration // wall and CPU (client side) time
	stream    time.Duration // pgha's: the backup's own elapsed time, from its start to stored
	size      int64
}

// The table's operations and tools.
const (
	opZstd    = "full, zstd-1"
	opGzip    = "full, gzip-1"
	opIncr    = "incremental, 5% rows"
	opRestore = "restore full (zstd)"
	opFloor   = "full, no compression"

	toolPgha  = "pgha"
	toolAlt   = "pgha -pgha-alt"
	toolBB    = "pg_basebackup"
	toolBR    = "pgBackRest 2.45"
	toolUntar = "zstd -d | tar -x (pg_basebackup's)"
	toolNull  = "pg_basebackup -Ft -D - > /dev/null"
	toolNullV = "pg_basebackup ... --no-verify-checksums"
)

func (b *bkBench) run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = b.env
	out, err := cmd.CombinedOutput()
	b.addCPU(cmd)
	if err != nil {
		return fmt.Errorf("%s %v: %v\n%s", name, args, err, out)
	}
	return nil
}

// addCPU counts the user and system time of a finished command and of
// the children it waited for (a pipeline's programs, pgBackRest's
// processes): what the tool spent on the client side. The server's own
// work for a stream (the WAL sender reading and sending files) is not in
// it; pgBackRest reads the files itself, so its figure holds that too.
func (b *bkBench) addCPU(cmd *exec.Cmd) {
	if ps := cmd.ProcessState; ps != nil {
		b.cpu += ps.UserTime() + ps.SystemTime()
	}
}

func (b *bkBench) sh(script string) error { return b.run("bash", "-o", "pipefail", "-ec", script) }

// asPostgres runs a command as the postgres OS user, who owns the data
// directory pgBackRest reads and the socket it connects through.
func (b *bkBench) asPostgres(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = b.env
	cmd.Dir = b.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: b.cred}
	out, err := cmd.CombinedOutput()
	b.addCPU(cmd)
	if err != nil {
		return out, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out, nil
}

func (b *bkBench) measure(op, tool string, size func() int64, f func() error) error {
	b.cpu, b.stream = 0, 0
	start := time.Now()
	if err := f(); err != nil {
		return err
	}
	b.results = append(b.results, result{op, tool, time.Since(start), b.cpu, b.stream, size()})
	return nil
}

func dirSize(d string) int64 {
	var n int64
	filepath.Walk(d, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// setupBaselines checks the baselines' programs and creates pgBackRest's
// repository and stanza.
func (b *bkBench) setupBaselines() error {
	for _, p := range []string{"pgbackrest", "pigz", "zstd"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s is not installed: run `make setup` (apt-get install pgbackrest pigz zstd)", p)
		}
	}
	br := filepath.Join(b.dir, "pgbackrest")
	for _, d := range []string{"repo", "log", "lock", "spool"} {
		if err := os.MkdirAll(filepath.Join(br, d), 0o750); err != nil {
			return err
		}
	}
	if err := b.sh(fmt.Sprintf("chown -R %d:%d %s", b.cred.Uid, b.cred.Gid, br)); err != nil {
		return err
	}
	brLog := "off"
	if os.Getenv("BENCH_KEEP") != "" {
		brLog = "detail"
	}
	// zst level 1 and process-max = cores: pgha's compression and
	// parallelism; start-fast as pgha's and pg_basebackup's -c fast.
	b.brConf = filepath.Join(br, "pgbackrest.conf")
	conf := fmt.Sprintf(`[global]
repo1-path=%s/repo
log-path=%s/log
lock-path=%s/lock
spool-path=%s/spool
compress-type=zst
compress-level=1
process-max=%d
start-fast=y
log-level-console=warn
log-level-file=%s
repo1-retention-full=100

[bench]
pg1-path=%s
pg1-port=%d
pg1-socket-path=%s
pg1-user=postgres
`, br, br, br, br, b.cores, brLog, filepath.Join(b.dir, "data", "db1"), b.port, filepath.Join(b.dir, "sock"))
	if err := os.WriteFile(b.brConf, []byte(conf), 0o644); err != nil {
		return err
	}
	_, err := b.asPostgres("pgbackrest", "--config="+b.brConf, "--stanza=bench", "stanza-create")
	return err
}

// round takes every full (the tools in an order that rotates each
// round), restores the zstd ones, changes 5 % of the rows and takes the
// incrementals on the fulls just taken.
func (b *bkBench) round(round int, bin string) error {
	repo := filepath.Join(b.dir, "backups")
	none := func() int64 { return 0 }
	pghaBin := func(tool, bin, op, comp string, extra ...string) error {
		if err := b.write(comp); err != nil {
			return err
		}
		before := dirSize(repo)
		return b.measure(op, tool, func() int64 { return dirSize(repo) - before }, func() error {
			return b.backup(bin, extra...)
		})
	}
	pgha := func(op, comp string, extra ...string) error { return pghaBin(toolPgha, bin, op, comp, extra...) }
	basebackup, err := findBin("pg_basebackup")
	if err != nil {
		return err
	}
	bbArgs := fmt.Sprintf("%s -Ft -X fetch -c fast -h 127.0.0.1 -p %d -U replicator", basebackup, b.port)
	bbZstd := filepath.Join(b.dir, "bb-zstd")
	bbGzip := filepath.Join(b.dir, "bb-gzip")
	brRepo := filepath.Join(b.dir, "pgbackrest", "repo", "backup")
	pgbackrest := func(op string, args ...string) error {
		before := dirSize(brRepo)
		return b.measure(op, toolBR, func() int64 { return dirSize(brRepo) - before }, func() error {
			_, err := b.asPostgres("pgbackrest", append([]string{"--config=" + b.brConf, "--stanza=bench"}, args...)...)
			return err
		})
	}
	rotate := func(fs []func() error) error {
		for i := range fs {
			if err := fs[(i+round)%len(fs)](); err != nil {
				return err
			}
		}
		return nil
	}

	fulls := []func() error{
		func() error { return pgha(opZstd, "zstd") },
		func() error { return pgha(opGzip, "gzip") },
	}
	if b.alt != "" {
		fulls = append(fulls,
			func() error { return pghaBin(toolAlt, b.alt, opZstd, "zstd") },
			func() error { return pghaBin(toolAlt, b.alt, opGzip, "gzip") })
	}
	if !b.docker {
		fulls = append(fulls,
			func() error {
				os.RemoveAll(bbZstd)
				return b.measure(opZstd, toolBB, func() int64 { return dirSize(bbZstd) }, func() error {
					return b.sh(fmt.Sprintf("%s -D %s --compress=client-zstd:level=1,workers=%d", bbArgs, bbZstd, b.cores))
				})
			},
			func() error {
				os.RemoveAll(bbGzip)
				if err := os.MkdirAll(bbGzip, 0o700); err != nil {
					return err
				}
				return b.measure(opGzip, toolBB, func() int64 { return dirSize(bbGzip) }, func() error {
					return b.sh(fmt.Sprintf("%s -D - | pigz -p %d -1 > %s/base.tar.gz", bbArgs, b.cores, bbGzip))
				})
			},
			func() error { return pgbackrest(opZstd, "--type=full", "backup") },
		)
		if b.floor {
			// What the server's stream alone costs: no compression, no
			// file written; and without the server's page checksum
			// verification (pgha and pg_basebackup both verify).
			fulls = append(fulls,
				func() error {
					return b.measure(opFloor, toolNull, none, func() error { return b.sh(bbArgs + " -D - > /dev/null") })
				},
				func() error {
					return b.measure(opFloor, toolNullV, none, func() error { return b.sh(bbArgs + " -D - --no-verify-checksums > /dev/null") })
				})
		}
	}
	if err := rotate(fulls); err != nil {
		return err
	}

	if !b.docker { // a restore on docker goes into a volume: not like for like
		zstdID, err := b.newestFull(bin)
		if err != nil {
			return err
		}
		target := filepath.Join(b.dir, "restore")
		restores := []func() error{
			func() error {
				defer os.RemoveAll(target)
				return b.measure(opRestore, toolPgha, none, func() error {
					return b.run(bin, "restore", "-f", b.file, "-target-dir", target, zstdID)
				})
			},
			func() error {
				defer os.RemoveAll(target)
				if err := os.Mkdir(target, 0o700); err != nil {
					return err
				}
				return b.measure(opRestore, toolUntar, none, func() error {
					return b.sh(fmt.Sprintf("zstd -q -d -c %s/base.tar.zst | tar -x -C %s", bbZstd, target))
				})
			},
			func() error {
				defer os.RemoveAll(target)
				if err := os.Mkdir(target, 0o700); err != nil {
					return err
				}
				if err := os.Chown(target, int(b.cred.Uid), int(b.cred.Gid)); err != nil {
					return err
				}
				return pgbackrest(opRestore, "--pg1-path="+target, "restore")
			},
		}
		if err := rotate(restores); err != nil {
			return err
		}
	}

	// An incremental after about 5 % of the rows changed (a contiguous
	// range, as a day's writes to a table mostly are; a different range
	// each round), from clean buffers as the fulls.
	accounts := b.scale * 100000
	from := (round % 20) * accounts / 20
	if err := b.run(b.psql, append(b.conn, "-qc", fmt.Sprintf("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid > %d AND aid <= %d", from, from+accounts/20))...); err != nil {
		return err
	}
	if err := b.run(b.psql, append(b.conn, "-qc", "CHECKPOINT")...); err != nil {
		return err
	}
	incrs := []func() error{func() error { return pgha(opIncr, "zstd", "-type", "incremental") }}
	if !b.docker {
		incrs = append(incrs, func() error { return pgbackrest(opIncr, "--type=incr", "backup") })
	}
	return rotate(incrs)
}

// backup runs `pgha backup -json` and keeps the elapsed time it reports
// for the backup itself (stream, compression, storage), so that the table
// can tell it from the command's start and its catalog work.
func (b *bkBench) backup(bin string, extra ...string) error {
	cmd := exec.Command(bin, append([]string{"backup", "-json", "-f", b.file}, extra...)...)
	cmd.Env = b.env
	out, err := cmd.CombinedOutput()
	b.addCPU(cmd)
	if err != nil {
		return fmt.Errorf("%s backup %v: %v\n%s", bin, extra, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		var ev struct {
			Type   string
			Backup struct {
				Elapsed float64 `json:"elapsed_seconds"`
			}
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Type == "backup_complete" {
			b.stream = time.Duration(ev.Backup.Elapsed * float64(time.Second))
		}
	}
	return nil
}

// newestFull is the ID of pgha's newest zstd full.
func (b *bkBench) newestFull(bin string) (string, error) {
	cmd := exec.Command(bin, "backup", "list", "-json", "-f", b.file)
	cmd.Env = b.env
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("backup list: %v", err)
	}
	var l struct {
		Backups []struct{ ID, Type, Compression string }
	}
	if err := json.Unmarshal(out, &l); err != nil {
		return "", err
	}
	for _, bk := range l.Backups { // newest first
		if bk.Type == "full" && bk.Compression == "zstd" {
			return bk.ID, nil
		}
	}
	return "", fmt.Errorf("backup list: no zstd full")
}

// target is what pgha's median must be against a baseline's, as a
// fraction of it (issue 13): at most the like-for-like pipeline, at most
// 0.8x pgBackRest.
func target(op, tool string) float64 {
	switch tool {
	case toolBR:
		return 0.8
	case toolBB, toolUntar:
		return 1.0
	}
	return 0
}

// print writes the table: one row per operation and tool, the median of
// its runs, its stored size, and for every baseline the ratio of pgha's
// median to its own, with the target and whether it is met.
func (b *bkBench) print(rt, walCompression string) {
	type key struct{ op, tool string }
	runs := map[key][]time.Duration{}
	cpus := map[key][]time.Duration{}
	sizes := map[key][]int64{}
	var order []key
	for _, r := range b.results {
		k := key{r.op, r.tool}
		if _, ok := runs[k]; !ok {
			order = append(order, k)
		}
		runs[k] = append(runs[k], r.took)
		cpus[k] = append(cpus[k], r.cpu)
		sizes[k] = append(sizes[k], r.size)
	}
	ops := []string{opZstd, opGzip, opFloor, opIncr, opRestore}
	slices.SortStableFunc(order, func(a, c key) int {
		if d := slices.Index(ops, a.op) - slices.Index(ops, c.op); d != 0 {
			return d
		}
		if a.tool == toolPgha {
			return -1
		}
		if c.tool == toolPgha {
			return 1
		}
		return 0
	})
	med := func(d []time.Duration) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)/2]
	}
	median := func(k key) time.Duration { return med(runs[k]) }
	size := func(k key) int64 {
		s := slices.Clone(sizes[k])
		slices.Sort(s)
		return s[len(s)/2]
	}
	wal := ""
	if walCompression != "" {
		wal = ", wal_compression = " + walCompression
	}
	fmt.Printf("\nBackups of a pgbench scale-%d data set (%s runtime, %d cores%s): every tool once per round, in turn, %d rounds; medians\n\n",
		b.scale, rt, b.cores, wal, b.rounds)
	fmt.Printf("%-22s %-46s %4s %9s %9s %10s %7s %7s %7s %8s %s\n", "operation", "tool", "runs", "time", "cpu", "stored", "time x", "cpu x", "size x", "target", "met?")
	for _, k := range order {
		st := bytesize.Format(size(k))
		if size(k) == 0 {
			st = "-"
		}
		tx, cx, sx, tg, met := "", "", "", "", ""
		pg := key{k.op, toolPgha}
		if k.op == opFloor {
			pg = key{opZstd, toolPgha} // pgha's zstd full over the bare stream
		}
		if _, ok := runs[pg]; ok && k.tool != toolPgha {
			r := median(pg).Seconds() / median(k).Seconds()
			tx = fmt.Sprintf("%.2fx", r)
			cx = fmt.Sprintf("%.2fx", med(cpus[pg]).Seconds()/med(cpus[k]).Seconds())
			if size(k) > 0 {
				sx = fmt.Sprintf("%.2fx", float64(size(pg))/float64(size(k)))
			}
			if t := target(k.op, k.tool); t > 0 {
				tg = fmt.Sprintf("<= %.1fx", t)
				met = verdict(r <= t)
			}
		}
		tool := k.tool
		switch {
		case k.tool == toolBB && k.op == opZstd:
			tool += fmt.Sprintf(" client-zstd:level=1,workers=%d", b.cores)
		case k.tool == toolBB && k.op == opGzip:
			tool += fmt.Sprintf(" -Ft -D - | pigz -p %d -1", b.cores)
		case k.tool == toolBR && k.op == opIncr:
			tool += " --type=incr"
		}
		fmt.Printf("%-22s %-46s %4d %9s %9s %10s %7s %7s %7s %8s %s\n", k.op, tool, len(runs[k]), median(k).Round(time.Millisecond),
			med(cpus[k]).Round(time.Millisecond), st, tx, cx, sx, tg, met)
	}
	incr, full := key{opIncr, toolPgha}, key{opZstd, toolPgha}
	if _, ok := runs[incr]; ok {
		t := median(incr).Seconds() / median(full).Seconds()
		s := float64(size(incr)) / float64(max(size(full), 1))
		c := med(cpus[incr]).Seconds() / med(cpus[full]).Seconds()
		pct := func(f float64) string { return strconv.Itoa(int(100*f+0.5)) + "%" }
		fmt.Printf("%-22s %-46s %4s %9s %9s %10s %7s %7s %7s %8s %s\n", opIncr, "pgha incremental / pgha full (zstd)", "", "", "", "",
			pct(t), pct(c), pct(s), "<= 20%", verdict(t <= 0.2 && s <= 0.2))
	}
	streams := map[key][]time.Duration{}
	for _, r := range b.results {
		if r.stream > 0 {
			streams[key{r.op, r.tool}] = append(streams[key{r.op, r.tool}], r.stream)
		}
	}
	fmt.Println()
	for _, k := range order {
		if st := streams[k]; len(st) > 0 {
			fmt.Printf("%s, %s: of its median %s, the backup itself (stream, compression, storage) took %s; the rest is the command's start, observation and catalog\n",
				k.tool, k.op, median(k).Round(time.Millisecond), med(st).Round(time.Millisecond))
		}
	}
	fmt.Println("\ntime x, cpu x, size x: pgha's median over the row's. cpu: user+system time of the tool's processes (the client side;")
	fmt.Println("the server's WAL sender is not counted, pgBackRest reads the files itself). pgBackRest's size: its backup set, its WAL archive aside.")
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
