package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// runSync measures what synchronous replication costs: pgbench (TPC-B
// like, 8 clients) against the primary of one three-node cluster, in
// turn with replication asynchronous and with replication { synchronous
// { standbys = 1 } } (ANY 1 (db2, db3)), switched by `pgha apply` between
// runs, rounds times; the table shows medians of throughput and latency,
// and sync's ratio to async. fsync stays on: a synchronous commit waits
// for a standby's flush on top of the primary's own.
func runSync(bin string, scale, rounds int, seconds int, runtime, image string) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	sc, err := newScratch("pgha-bench-sync", "benchsync", 4, runtime, image)
	if err != nil {
		return err
	}
	defer sc.remove()
	ports, file, name, rtBlock := sc.ports, sc.file, sc.name, sc.rtBlock
	writeFile := func(synchronous bool) error {
		block := ""
		if synchronous {
			block = "    synchronous {\n      standbys = 1\n      strict   = true\n    }\n"
		}
		return os.WriteFile(file, []byte(fmt.Sprintf(`cluster %q {
  primary = "db1"
%s  postgres {
    password = env("BENCH_PW")
  }
  node "db1" {
    port = %d
    slot = "db1"
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
%s  }
  catalog "redis" {
    address = "127.0.0.1:%d"
    managed = true
  }
}
`, name, rtBlock, ports[0], ports[1], ports[2], block, ports[3])), 0o644)
	}
	env := append(os.Environ(), "BENCH_PW=bench-only-password", "PGPASSWORD=bench-only-password")
	pgha := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{args[0], "-f", file}, args[1:]...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("pgha %v: %v\n%s", args, err, out)
		}
		return string(out), nil
	}
	if err := writeFile(false); err != nil {
		return err
	}
	defer func() { _, _ = pgha("destroy", "-auto-approve", "-delete-volumes") }()
	fmt.Printf("sync: three %s nodes and a managed Redis...\n", runtime)
	if _, err := pgha("apply", "-auto-approve"); err != nil {
		return err
	}
	pgbench, err := findBin("pgbench")
	if err != nil {
		return err
	}
	psql, err := findPsql()
	if err != nil {
		return err
	}
	conn := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(ports[0]), "-U", "postgres"}
	fmt.Printf("sync: pgbench -i -s %d...\n", scale)
	init := exec.Command(pgbench, append(append([]string{"-i", "-q", "-s", strconv.Itoa(scale)}, conn...), "postgres")...)
	init.Env = env
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	setting := func() (string, error) {
		cmd := exec.Command(psql, append(conn, "-d", "postgres", "-Atc", "SHOW synchronous_standby_names")...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	// mode switches the cluster to synchronous or back and checks the
	// primary's setting: an apply that did not take would measure the
	// same mode twice.
	mode := func(synchronous bool) error {
		if err := writeFile(synchronous); err != nil {
			return err
		}
		want := ""
		if synchronous {
			want = "ANY 1 (db2, db3)"
		}
		for try := 0; ; try++ {
			if _, err := pgha("apply", "-auto-approve"); err != nil {
				return err
			}
			got, err := setting()
			if err == nil && got == want {
				return nil
			}
			if try == 3 {
				return fmt.Errorf("synchronous_standby_names on db1 is %q after apply, want %q (%v)", got, want, err)
			}
			time.Sleep(time.Second)
		}
	}
	tpsRe := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	latRe := regexp.MustCompile(`latency average = ([0-9.]+) ms`)
	run := func() (tps, lat float64, err error) {
		// Each run starts after a checkpoint, so that one run's dirty
		// pages are not the next one's checkpoint.
		ck := exec.Command(psql, append(conn, "-d", "postgres", "-qc", "CHECKPOINT")...)
		ck.Env = env
		if out, err := ck.CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("checkpoint: %v\n%s", err, out)
		}
		cmd := exec.Command(pgbench, append(append([]string{"-c", "8", "-j", "2", "-T", strconv.Itoa(seconds)}, conn...), "postgres")...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, 0, fmt.Errorf("pgbench: %v\n%s", err, out)
		}
		t, l := tpsRe.FindSubmatch(out), latRe.FindSubmatch(out)
		if t == nil || l == nil {
			return 0, 0, fmt.Errorf("pgbench printed no tps or latency:\n%s", out)
		}
		tps, _ = strconv.ParseFloat(string(t[1]), 64)
		lat, _ = strconv.ParseFloat(string(l[1]), 64)
		return tps, lat, nil
	}
	type result struct{ tps, lat []float64 }
	res := map[bool]*result{false: {}, true: {}}
	for r := range rounds {
		for _, synchronous := range []bool{false, true} {
			if err := mode(synchronous); err != nil {
				return err
			}
			tps, lat, err := run()
			if err != nil {
				return err
			}
			label := "async"
			if synchronous {
				label = "sync "
			}
			fmt.Printf("sync: round %d %s: %.0f tps, %.2f ms\n", r+1, label, tps, lat)
			res[synchronous].tps = append(res[synchronous].tps, tps)
			res[synchronous].lat = append(res[synchronous].lat, lat)
		}
	}
	med := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	at, st := med(res[false].tps), med(res[true].tps)
	al, sl := med(res[false].lat), med(res[true].lat)
	cores := 0
	if b, err := exec.Command("nproc").Output(); err == nil {
		cores, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	fmt.Printf("\npgbench (TPC-B like, -c 8 -j 2, %d s a run, scale %d) against db1 of three %s nodes, %d cores; async and sync in turn, %d rounds, medians\n\n",
		seconds, scale, runtime, cores, rounds)
	fmt.Printf("%-44s %12s %14s %10s\n", "replication", "tps", "latency avg", "tps ratio")
	fmt.Printf("%-44s %12.0f %11.2f ms %10s\n", "asynchronous", at, al, "1.00")
	fmt.Printf("%-44s %12.0f %11.2f ms %10.2f\n", "synchronous: ANY 1 (db2, db3), strict", st, sl, st/at)
	// The machine's load drifts between rounds; each round's sync run
	// beside its own async run is the steadier comparison.
	var ratios []float64
	for i := range res[true].tps {
		ratios = append(ratios, res[true].tps[i]/res[false].tps[i])
	}
	slower := 0
	for _, r := range ratios {
		if r < 1 {
			slower++
		}
	}
	fmt.Printf("\nsync/async tps round by round: median %.2f (sync slower in %d of %d rounds)\n", med(ratios), slower, len(ratios))
	return nil
}
