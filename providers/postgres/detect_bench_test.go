package postgres

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/health"
	"github.com/pgha/pgha/internal/proc"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// BenchmarkDetection runs the watcher's check (a heartbeat over a kept
// session, an observation of both nodes, the detector) every second at
// the default policy (check_interval 1s, failure_threshold 3, heartbeat
// timeout 800 ms) against a primary with one streaming standby, through
// three phases:
//
//  1. pgbench at full CPU (8 clients, both cores) for PGHA_LOAD_SECONDS
//     (default 30): any Lost verdict is a false failover; it reports the
//     slowest heartbeat, the oldest message age the standby reported and
//     the suspect checks.
//  2. the primary paused (SIGSTOP of the postmaster and its children)
//     until the detector says Lost: the detection time of a silent
//     primary (host crash, partition), standbys confirming.
//  3. the postmaster killed (SIGKILL), as the local runtime sees it: the
//     detection time of a crash, and how long the standby kept saying it
//     streams.
//
// go test -run '^$' -bench Detection -benchtime 1x ./providers/postgres/
func BenchmarkDetection(b *testing.B) {
	load := 30 * time.Second
	if s := os.Getenv("PGHA_LOAD_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("PGHA_LOAD_SECONDS=%q: %v", s, err)
		}
		load = time.Duration(n) * time.Second
	}
	p := testenv.StartPostgres(b)
	s := testenv.StartStandby(b, p, "db2", "")
	ctx := context.Background()
	pep, sep := endpoint(p), endpoint(s)
	pep.Name, sep.Name = "db1", "db2"
	if err := WaitStreaming(ctx, sep); err != nil {
		b.Fatal(err)
	}
	cfg := &config.Cluster{Name: "bench", Primary: "db1", Runtime: config.Runtime{Kind: "local"},
		Nodes: []*config.Node{{Name: "db1", Host: p.Host, Port: p.Port}, {Name: "db2", Host: s.Host, Port: s.Port}}}
	const interval, timeout = time.Second, 800 * time.Millisecond
	det := health.New(health.Config{Threshold: 3, Interval: interval})
	hb := NewHeartbeater(pep)
	defer hb.Close()
	pid := postmasterPID(b, p)

	type result struct {
		v            health.Verdict
		beat, msgAge time.Duration
	}
	check := func() result {
		var wg sync.WaitGroup
		db1, db2 := &state.Node{Name: "db1", Initialized: true}, &state.Node{Name: "db2", Initialized: true}
		var beatErr error
		var beat time.Duration
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		wg.Add(3)
		go func() { defer wg.Done(); Observe(cctx, pep, db1, nil) }()
		go func() { defer wg.Done(); Observe(cctx, sep, db2, nil) }()
		go func() {
			defer wg.Done()
			start := time.Now()
			beatErr = hb.Beat(ctx, timeout)
			beat = time.Since(start)
		}()
		wg.Wait()
		db1.Running = aliveNotZombie(pid) // as the local runtime tells
		db2.Running = true
		st := &state.Cluster{Nodes: []*state.Node{db1, db2}}
		r := result{v: det.Update(health.FromCluster(cfg, st, "db1", beatErr)), beat: beat}
		if db2.Upstream != nil {
			r.msgAge = db2.Upstream.LastMessageAge
		}
		return r
	}
	// tick runs check every interval until done says stop.
	tick := func(done func(time.Time, result) bool) {
		next := time.Now()
		for {
			r := check()
			if done(time.Now(), r) {
				return
			}
			next = next.Add(interval)
			time.Sleep(time.Until(next))
		}
	}

	// 1. Load.
	pgbench := func(args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(p.BinDir, "pgbench"), append([]string{"-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", p.User}, args...)...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+p.Password)
		return cmd
	}
	if out, err := pgbench("-i", "-s", "10", "-q", "postgres").CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	bench := pgbench("-c", "8", "-j", "2", "-T", strconv.Itoa(int(load.Seconds())), "postgres")
	var benchOut strings.Builder
	bench.Stdout, bench.Stderr = &benchOut, &benchOut
	if err := bench.Start(); err != nil {
		b.Fatal(err)
	}
	benchDone := make(chan error, 1)
	go func() { benchDone <- bench.Wait() }()
	b.ResetTimer()
	var maxBeat, maxAge time.Duration
	var checks, suspect, lost int
	var firstLost string
	tick(func(_ time.Time, r result) bool {
		checks++
		maxBeat, maxAge = max(maxBeat, r.beat), max(maxAge, r.msgAge)
		switch r.v.Status {
		case health.Suspect:
			suspect++
			say("under load, suspect: %s", r.v.Reason)
		case health.Lost:
			lost++
			if firstLost == "" {
				firstLost = r.v.Reason
			}
		}
		select {
		case err := <-benchDone:
			if err != nil {
				b.Fatalf("pgbench: %v\n%s", err, benchOut.String())
			}
			return true
		default:
			return false
		}
	})
	say("%d checks under pgbench: slowest heartbeat %s, oldest standby message %s, %d suspect, %d lost %s\n%s",
		checks, maxBeat.Round(time.Millisecond), maxAge.Round(time.Millisecond), suspect, lost, firstLost, tail(benchOut.String(), 6))
	b.ReportMetric(float64(maxBeat.Milliseconds()), "max-beat-ms")
	b.ReportMetric(float64(maxAge.Milliseconds()), "max-msg-age-ms")
	b.ReportMetric(float64(suspect), "suspect-checks")
	b.ReportMetric(float64(lost), "false-lost-checks")

	// 2. Paused.
	for range 3 { // healthy again
		if r := check(); r.v.Status != health.Healthy {
			say("after the load: %s %s", r.v.Status, r.v.Reason)
		}
		time.Sleep(interval)
	}
	// The postmaster and every child (each its own process group).
	group := append([]int{pid}, proc.Children(pid)...)
	signal := func(sig syscall.Signal) {
		for _, p := range group {
			if err := syscall.Kill(p, sig); err != nil && err != syscall.ESRCH {
				b.Fatalf("signal %d: %v", p, err)
			}
		}
	}
	signal(syscall.SIGSTOP)
	paused := time.Now()
	var pausedLost time.Duration
	tick(func(now time.Time, r result) bool {
		say("paused %s: %s %s (standby message age %s)", now.Sub(paused).Round(time.Millisecond), r.v.Status, r.v.Reason, r.msgAge.Round(time.Millisecond))
		if r.v.Status == health.Lost {
			pausedLost = now.Sub(paused)
			return true
		}
		return now.Sub(paused) > 20*time.Second
	})
	signal(syscall.SIGCONT)
	b.ReportMetric(pausedLost.Seconds(), "paused-detect-s")
	hb.Close()
	if err := WaitStreaming(ctx, sep); err != nil {
		b.Fatal(err)
	}
	for range 3 {
		check()
		time.Sleep(interval)
	}

	// 3. Crashed.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		b.Fatal(err)
	}
	killed := time.Now()
	var crashLost time.Duration
	tick(func(now time.Time, r result) bool {
		say("killed %s: %s %s", now.Sub(killed).Round(time.Millisecond), r.v.Status, r.v.Reason)
		if r.v.Status == health.Lost {
			crashLost = now.Sub(killed)
			return true
		}
		return now.Sub(killed) > 20*time.Second
	})
	b.ReportMetric(crashLost.Seconds(), "crash-detect-s")
	// The standby's receiver: how soon it stopped streaming.
	n := &state.Node{}
	Observe(ctx, sep, n, nil)
	say("standby after the crash: upstream %+v", n.Upstream)
}

// say prints a line of the benchmark's timeline (b.Logf truncates).
func say(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// aliveNotZombie: the process exists and is not a zombie (an orphaned
// postmaster stays one under a parent that does not reap).
func aliveNotZombie(pid int) bool {
	st, err := proc.Read(pid)
	return err == nil && !st.Exited()
}

func postmasterPID(b testing.TB, p *testenv.Postgres) int {
	data, err := os.ReadFile(filepath.Join(p.DataDir, "postmaster.pid"))
	if err != nil {
		b.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(data), "\n", 2)[0])
	if err != nil {
		b.Fatalf("postmaster.pid: %v", err)
	}
	return pid
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
