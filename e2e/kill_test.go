package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// killPoint is a moment of a switchover at which pgha is SIGKILLed: after
// the first line of pgha's output containing after ("{target}" and
// "{old}" name the new and the old primary) has been printed, wait delay.
type killPoint struct {
	name  string
	after string // a substring of pgha's output; "{target}" is replaced
	delay time.Duration
}

// killPoints spread over a switchover and what follows it: right after the
// plan (lock held, nothing done), inside the switchover action (checkpoint,
// the old primary stopping or stopped, the target replaying or promoting),
// and in the rejoin of the old primary and the record that ends the plan.
var killPoints = []killPoint{
	{"plan shown, nothing done", "Plan: ", 0},
	{"switchover +30ms", "Plan: ", 30 * time.Millisecond},
	{"switchover +80ms", "Plan: ", 80 * time.Millisecond},
	{"switchover +150ms", "Plan: ", 150 * time.Millisecond},
	{"switchover +250ms", "Plan: ", 250 * time.Millisecond},
	{"target promoted", "switchover[{target}]: done", 0},
	{"rejoin: checkpoint done", "checkpoint on {target}", 0},
	{"rejoin: checkpoint +60ms", "checkpoint on {target}", 60 * time.Millisecond},
	{"rejoin: pg_rewind done", "pg_rewind: ", 0},
	{"old primary rejoined", "standby.rejoin[{old}]: done", 0},
}

// TestLocalSwitchoverKill: pgha is SIGKILLed at ten moments of a
// switchover under a writing client. Each time the next `pgha apply` on
// the same host converges (plan -detailed-exitcode 0, the declared node
// primary) within 10 s of the kill; no acknowledged write is lost; and a
// poll every 50 ms never sees two writable primaries.
//
// It does not run in parallel with the other scenarios: the 10 s bound
// times pgha's recovery, and in make test at e9e7e45, beside
// TestDockerPointInTimeRestore, the rejoin's fast stop of the old
// primary (its shutdown checkpoint) and fork check took 16.2 s of I/O
// contention (kill point 9 converged in 19.3 s).
func TestLocalSwitchoverKill(t *testing.T) {
	c := newCluster(t, "local", 3)
	ctx := context.Background()
	c.mustPgha("apply", "-auto-approve")
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE ha_writes (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	w := startWriter(ctx, c)
	poll := startPrimaryPoll(ctx, c)

	primary := "db1"
	var report []string
	for i, kp := range killPoints {
		target := c.names[(i+1)%len(c.names)]
		if target == primary {
			target = c.names[(i+2)%len(c.names)]
		}
		c.write(strings.Replace(string(good), `primary = "db1"`, `primary = "`+target+`"`, 1))
		killed, last := c.killApplyAt(t, kp, primary, target)
		r := c.pgha("apply", "-auto-approve")
		took := time.Since(killed)
		if r.code != 0 {
			t.Fatalf("kill point %d (%s, last line %q): the next apply failed after %s:\n%s", i+1, kp.name, last, took.Round(time.Millisecond), r)
		}
		if strings.Contains(r.stdout, "Acquiring the cluster lock") || strings.Contains(r.stderr, "lock held") {
			t.Fatalf("kill point %d: the next apply waited for the dead pgha's lock:\n%s", i+1, r)
		}
		if !strings.Contains(r.stdout, "Took over the cluster lock of pid") {
			t.Errorf("kill point %d: the next apply did not say it took over the lock:\n%s", i+1, r.stdout)
		}
		if took > 10*time.Second {
			t.Errorf("kill point %d (%s): converged %s after the kill, more than 10 s:\n%s", i+1, kp.name, took.Round(time.Millisecond), r.stdout)
		}
		if p := c.primary(ctx); p != target {
			t.Fatalf("kill point %d (%s): primary after the apply is %q, want %s:\n%s", i+1, kp.name, p, target, r)
		}
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("kill point %d (%s): not converged after one apply:\n%s", i+1, kp.name, r)
		}
		report = append(report, fmt.Sprintf("%2d %-26s converged in %-7s last line %-44q next apply: %s",
			i+1, kp.name, took.Round(time.Millisecond), last, ranActions(r.stdout)))
		primary = target
	}
	time.Sleep(300 * time.Millisecond)
	acked := w.finish()
	two := poll.finish(t)
	for _, l := range report {
		t.Log(l)
	}
	t.Logf("writer: %d acknowledged writes", len(acked))
	if len(two) > 0 {
		t.Fatalf("two writable primaries seen %d times, first: %s", len(two), two[0])
	}
	if len(acked) < 100 {
		t.Fatalf("the writer committed only %d rows (last error %v)", len(acked), w.lastErr.Load())
	}
	if m := missing(ctx, t, c, primary, acked); len(m) > 0 {
		t.Fatalf("%d acknowledged writes missing on %s: %v", len(m), primary, m)
	}
}

// ranActions lists the actions an apply ran, from its progress lines.
func ranActions(out string) string {
	var ids []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "[") && strings.Contains(l, ": done in") {
			f := strings.Fields(l)
			if len(f) >= 3 {
				ids = append(ids, strings.TrimSuffix(f[2], ":"))
			}
		}
	}
	if strings.Contains(out, "the switchover resumes") {
		ids = append([]string{"(resumed)"}, ids...)
	}
	return strings.Join(ids, " ")
}

// killApplyAt starts `pgha apply` towards target and SIGKILLs it at kp. It
// returns when the process is gone, with the moment of the kill and the
// last line pgha printed before it.
func (c *cluster) killApplyAt(t *testing.T, kp killPoint, old, target string) (time.Time, string) {
	t.Helper()
	after := strings.NewReplacer("{target}", target, "{old}", old).Replace(kp.after)
	cmd := c.command(context.Background(), "apply", "-auto-approve")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out []string
	seen := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		fired := false
		for sc.Scan() {
			mu.Lock()
			out = append(out, sc.Text())
			mu.Unlock()
			if !fired && strings.Contains(sc.Text(), after) {
				fired = true
				close(seen)
			}
		}
		if !fired {
			close(seen)
		}
	}()
	<-seen
	time.Sleep(kp.delay)
	killed := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill pgha at %q: %v", kp.name, err)
	}
	err = cmd.Wait()
	mu.Lock()
	defer mu.Unlock()
	c.noSecret("a killed apply", strings.Join(out, "\n"))
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("kill point %q: pgha was not killed mid-apply (%v); it printed:\n%s", kp.name, err, strings.Join(out, "\n"))
	}
	last := ""
	for i := len(out) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(out[i]); s != "" {
			last = s
			break
		}
	}
	if len(last) > 60 {
		last = last[:60]
	}
	return killed, last
}

// primaryPoll asks every node every 50 ms whether it accepts writes, and
// remembers each moment when more than one did.
type primaryPoll struct {
	stop    chan struct{}
	done    chan struct{}
	samples int
	seen    int // rounds in which some node answered as writable
	start   time.Time
	two     []string
}

func startPrimaryPoll(ctx context.Context, c *cluster) *primaryPoll {
	p := &primaryPoll{stop: make(chan struct{}), done: make(chan struct{}), start: time.Now()}
	dsn := c.sslParams() // the cluster takes only TLS (hostssl): a plain-text poll would see nothing
	conns := make([]*pgx.Conn, len(c.names))
	go func() {
		defer close(p.done)
		defer func() {
			for _, cn := range conns {
				if cn != nil {
					cn.Close(context.Background())
				}
			}
		}()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			writable := make([]bool, len(c.names))
			var wg sync.WaitGroup
			for i, name := range c.names {
				wg.Add(1)
				go func() {
					defer wg.Done()
					qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
					defer cancel()
					if conns[i] == nil {
						cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres %s", c.port(name), dsn))
						if err != nil {
							// The test ended and removed its certificates while this round ran.
							return
						}
						cfg.Password = superPW
						conn, err := pgx.ConnectConfig(qctx, cfg)
						if err != nil {
							return
						}
						conns[i] = conn
					}
					var rec bool
					if err := conns[i].QueryRow(qctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
						conns[i].Close(context.Background())
						conns[i] = nil
						return
					}
					writable[i] = !rec
				}()
			}
			wg.Wait()
			p.samples++
			var w []string
			for i, ok := range writable {
				if ok {
					w = append(w, c.names[i])
				}
			}
			if len(w) > 0 {
				p.seen++
			}
			if len(w) > 1 {
				p.two = append(p.two, time.Now().Format("15:04:05.000")+" "+strings.Join(w, "+"))
			}
		}
	}()
	return p
}

// finish stops the poll and fails t unless the poll could have seen two
// primaries: rounds every 50 ms for at least half the time, and a
// writable node seen in most of them (a poll that cannot connect sees
// none, and would pass for ever).
func (p *primaryPoll) finish(t *testing.T) []string {
	t.Helper()
	close(p.stop)
	<-p.done
	want := int(time.Since(p.start) / (50 * time.Millisecond))
	t.Logf("poll: %d rounds of %d due, a writable node seen in %d", p.samples, want, p.seen)
	if p.samples < want/2 {
		t.Fatalf("the poll ran %d rounds where %d were due every 50 ms", p.samples, want)
	}
	if p.seen < p.samples/2 {
		t.Fatalf("the poll saw a writable node in only %d of %d rounds: it cannot see two", p.seen, p.samples)
	}
	return p.two
}
