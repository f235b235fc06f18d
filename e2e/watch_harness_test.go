package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/internal/proc"
	"github.com/pgha/pgha/internal/testenv"
)

// The pieces the watch scenarios share: a client writing through a
// multi-host connection string as an application does, the pgha watch
// process with its JSON decision log, pausing and killing a node's
// processes, and taking the catalog away.

// ack is one acknowledged write: its id, when the commit returned and the
// port of the node that acknowledged it.
type ack struct {
	id   int
	at   time.Time
	port int
}

// appWriter inserts increasing ids through one multi-host connection
// string with target_session_attrs=read-write, the way an application
// finds the primary without knowing it, and remembers every acknowledged
// id with the time of its acknowledgement.
type appWriter struct {
	c       *cluster
	mu      sync.Mutex
	acks    []ack
	next    int
	stop    chan struct{}
	done    chan struct{}
	lastErr string
}

// multiHostDSN is the application's connection string: every node, the
// first writable one wins, one second per host at most.
func (c *cluster) multiHostDSN() string {
	hosts := make([]string, len(c.names))
	ports := make([]string, len(c.names))
	for i := range c.names {
		hosts[i] = "127.0.0.1"
		ports[i] = strconv.Itoa(c.ports[i])
	}
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres %s connect_timeout=1 target_session_attrs=read-write",
		strings.Join(hosts, ","), strings.Join(ports, ","), c.sslParams())
}

// startAppWriter starts writing into table ha_writes, which must exist.
func startAppWriter(ctx context.Context, c *cluster) *appWriter {
	w := &appWriter{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	cfg, err := pgx.ParseConfig(c.multiHostDSN())
	if err != nil {
		c.t.Fatal(err)
	}
	cfg.Password = superPW // every host of the string shares it
	go func() {
		defer close(w.done)
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			if conn == nil {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				cn, err := pgx.ConnectConfig(cctx, cfg)
				cancel()
				if err != nil {
					w.setErr(err)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				conn = cn
			}
			w.mu.Lock()
			w.next++
			id := w.next
			w.mu.Unlock()
			ictx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := conn.Exec(ictx, "INSERT INTO ha_writes VALUES ($1)", id)
			cancel()
			if err != nil {
				w.setErr(err)
				conn.Close(context.Background())
				conn = nil
				continue
			}
			port := 0
			if a, ok := conn.PgConn().Conn().RemoteAddr().(*net.TCPAddr); ok {
				port = a.Port
			}
			w.mu.Lock()
			w.acks = append(w.acks, ack{id: id, at: time.Now(), port: port})
			w.mu.Unlock()
			time.Sleep(2 * time.Millisecond) // a steady stream, not a saturating one
		}
	}()
	return w
}

func (w *appWriter) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err.Error()
	w.mu.Unlock()
}

// snapshot returns the acknowledged writes so far.
func (w *appWriter) snapshot() []ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ack(nil), w.acks...)
}

// finish stops the writer and returns every acknowledged id.
func (w *appWriter) finish() []int {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return ids(w.snapshot())
}

func ids(acks []ack) []int {
	out := make([]int, len(acks))
	for i, a := range acks {
		out[i] = a.id
	}
	return out
}

// waitAcks waits until the writer has n more acknowledgements than now
// (it writes at all, through the current primary).
func (w *appWriter) waitAcks(t *testing.T, n int, d time.Duration) {
	t.Helper()
	base := len(w.snapshot())
	eventually(t, d, func() error {
		if got := len(w.snapshot()) - base; got < n {
			w.mu.Lock()
			defer w.mu.Unlock()
			return fmt.Errorf("the writer got %d acknowledgements of %d (last error %q)", got, n, w.lastErr)
		}
		return nil
	})
}

// gap is what an incident cost the writer: the longest wait between two
// acknowledged writes around it, the writes on either side (and the node
// that acknowledged the later one).
type gap struct {
	last, first ack
	d           time.Duration
}

func (g gap) String() string {
	return fmt.Sprintf("write gap %s (ids %d..%d, the first after on port %d)", g.d.Round(time.Millisecond), g.last.id, g.first.id, g.first.port)
}

// gapAfter waits until writes flow again after an incident at t0 (20
// acknowledged by the node on wantPort, 0: any node, since t0) and
// returns the longest wait between consecutive acknowledgements from the
// last one before t0 to then. A write acknowledged just after t0 was
// committed before the incident took effect; the hole is what counts.
func (w *appWriter) gapAfter(t *testing.T, t0 time.Time, wantPort int, d time.Duration) gap {
	t.Helper()
	var g gap
	eventually(t, d, func() error {
		acks := w.snapshot()
		i := sort.Search(len(acks), func(i int) bool { return acks[i].at.After(t0) })
		if i == 0 {
			return errors.New("no write was acknowledged before the incident")
		}
		n, end := 0, -1
		for j := i; j < len(acks) && end < 0; j++ {
			if wantPort == 0 || acks[j].port == wantPort {
				if n++; n == 20 {
					end = j
				}
			}
		}
		if end < 0 {
			w.mu.Lock()
			defer w.mu.Unlock()
			return fmt.Errorf("%d writes acknowledged on port %d since the incident (last error %q)", n, wantPort, w.lastErr)
		}
		g = gap{}
		for j := i; j <= end; j++ {
			if dd := acks[j].at.Sub(acks[j-1].at); dd > g.d {
				g = gap{last: acks[j-1], first: acks[j], d: dd}
			}
		}
		return nil
	})
	return g
}

// walPerWrite measures the WAL one of the writer's inserts costs on the
// primary, to turn maximum_lag into a number of writes.
func (w *appWriter) walPerWrite(ctx context.Context, t *testing.T, primary string) float64 {
	t.Helper()
	return walPerWrite(ctx, t, w.c.with(t).conn(ctx, primary), func() (int, string) { return len(w.snapshot()), w.lastErr }, "")
}

// walPerWrite is the WAL a writer's write costs on the primary conn
// leads to: the WAL written in a second over the writes acknowledged
// meanwhile (acked says how many so far, and the writer's last error).
func walPerWrite(ctx context.Context, t *testing.T, conn *pgx.Conn, acked func() (int, string), via string) float64 {
	t.Helper()
	lsn := func() (int64, int) {
		var b int64
		if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").Scan(&b); err != nil {
			t.Fatal(err)
		}
		n, _ := acked()
		return b, n
	}
	b0, n0 := lsn()
	time.Sleep(time.Second)
	b1, n1 := lsn()
	if n1 <= n0 {
		_, last := acked()
		t.Fatalf("the writer wrote nothing%s in a second (last error %q)", via, last)
	}
	return float64(b1-b0) / float64(n1-n0)
}

// watchProc is a running `pgha watch -log-format json`: its decision log
// parsed line by line.
type watchProc struct {
	c      *cluster
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	recs   []logRec
	raw    strings.Builder
	exited chan struct{}
	err    error
	notify chan struct{}
}

// logRec is one slog record of the decision log.
type logRec struct {
	Time   time.Time
	Msg    string
	Fields map[string]any
	Line   string
}

func (r logRec) field(k string) string {
	v, ok := r.Fields[k]
	if !ok {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// startWatch runs `pgha watch -f FILE -log-format json` in the background
// until the test stops it (stopWatch) or ends (killed at cleanup, before
// the cluster's own teardown destroys what the watcher would heal).
func (c *cluster) startWatch(name string, extra ...string) *watchProc {
	c.t.Helper()
	return c.startProc(name, append([]string{"watch", "-log-format", "json"}, extra...)...)
}

// startProc runs `pgha ARGS...` in the background as startWatch does
// (any command logging JSON on stderr: watch, archive).
func (c *cluster) startProc(name string, args ...string) *watchProc {
	c.t.Helper()
	return c.startCmd(name, c.command(context.Background(), args...))
}

// startCmd runs cmd, a pgha command logging JSON on stderr, as startProc
// does (wrapped: `ip netns exec NS pgha agent ...`).
func (c *cluster) startCmd(name string, cmd *exec.Cmd) *watchProc {
	c.t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	w := &watchProc{c: c, name: name, cmd: cmd, exited: make(chan struct{}), notify: make(chan struct{}, 1)}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	w.mu.Lock()
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			rec := logRec{Line: line}
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				rec.Msg, _ = m["msg"].(string)
				if ts, ok := m["time"].(string); ok {
					rec.Time, _ = time.Parse(time.RFC3339Nano, ts)
				}
				delete(m, "msg")
				delete(m, "time")
				delete(m, "level")
				rec.Fields = m
			}
			if rec.Time.IsZero() {
				rec.Time = time.Now()
			}
			w.mu.Lock()
			w.recs = append(w.recs, rec)
			w.raw.WriteString(line + "\n")
			w.mu.Unlock()
			select {
			case w.notify <- struct{}{}:
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	w.mu.Unlock()
	go func() {
		<-scanned
		w.err = cmd.Wait()
		close(w.exited)
	}()
	c.t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-w.exited
		}
		c.noSecret("pgha watch "+name, w.log())
		if c.t.Failed() {
			c.t.Logf("--- decision log of watcher %s\n%s", name, w.tail(60))
		}
	})
	return w
}

// log returns everything the watcher printed so far.
func (w *watchProc) log() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.raw.String()
}

// tail returns the last n lines the watcher printed.
func (w *watchProc) tail(n int) string {
	l := strings.Split(strings.TrimRight(w.log(), "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// from returns the lines the watcher printed from position m (a mark) on.
func (w *watchProc) from(m int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, r := range w.recs[min(m, len(w.recs)):] {
		b.WriteString(r.Line + "\n")
	}
	return b.String()
}

// mark is a position in the log: later waits and counts look after it.
func (w *watchProc) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.recs)
}

// records returns the records from position from on with message msg
// ("" for all) whose fields hold the given values.
func (w *watchProc) records(from int, msg string, fields map[string]string) []logRec {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []logRec
	for _, r := range w.recs[min(from, len(w.recs)):] {
		if msg != "" && r.Msg != msg {
			continue
		}
		ok := true
		for k, v := range fields {
			if r.field(k) != v {
				ok = false
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// waitLog waits for a record with msg and fields after position from and
// returns it; it fails t after d, or when the watcher exits.
func (w *watchProc) waitLog(t *testing.T, from int, msg string, fields map[string]string, d time.Duration) logRec {
	t.Helper()
	deadline := time.After(d)
	for {
		if r := w.records(from, msg, fields); len(r) > 0 {
			return r[0]
		}
		select {
		case <-w.notify:
		case <-time.After(100 * time.Millisecond):
		case <-w.exited:
			if r := w.records(from, msg, fields); len(r) > 0 {
				return r[0]
			}
			t.Fatalf("watcher %s exited (%v) before logging %q %v; it printed:\n%s", w.name, w.err, msg, fields, w.tail(40))
		case <-deadline:
			t.Fatalf("watcher %s did not log %q %v within %s; it printed:\n%s", w.name, msg, fields, d, w.tail(40))
		}
	}
}

// stop sends SIGTERM and asserts a clean exit (status 0) within 20 s.
func (w *watchProc) stop(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM watcher %s: %v", w.name, err)
	}
	select {
	case <-w.exited:
	case <-time.After(20 * time.Second):
		_ = w.cmd.Process.Signal(syscall.SIGKILL)
		<-w.exited
		t.Fatalf("watcher %s still ran 20 s after SIGTERM:\n%s", w.name, w.tail(40))
	}
	if w.err != nil {
		t.Fatalf("watcher %s exited with %v after SIGTERM:\n%s", w.name, w.err, w.tail(40))
	}
}

// running reports whether the watcher process is still alive.
func (w *watchProc) running() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// postgresPids returns the host pids of a node's postmaster and of its
// children (backends, WAL sender, checkpointer...).
func (c *cluster) postgresPids(node string) []int {
	c.t.Helper()
	var pm int
	if c.rt == "docker" {
		// docker top lists host pids; the postmaster is the postgres
		// process whose parent is not a postgres process.
		out := docker(c.t, "top", c.container(node), "-eo", "pid,ppid,args")
		type proc struct{ pid, ppid int }
		var ps []proc
		for _, l := range strings.Split(out, "\n")[1:] {
			f := strings.Fields(l)
			if len(f) < 3 || !strings.HasSuffix(f[2], "/bin/postgres") && !strings.HasPrefix(f[2], "postgres:") {
				continue
			}
			pid, _ := strconv.Atoi(f[0])
			ppid, _ := strconv.Atoi(f[1])
			ps = append(ps, proc{pid, ppid})
		}
		isPG := map[int]bool{}
		for _, p := range ps {
			isPG[p.pid] = true
		}
		for _, p := range ps {
			if !isPG[p.ppid] {
				pm = p.pid
			}
		}
		if pm == 0 {
			c.t.Fatalf("no postmaster in %s:\n%s", c.container(node), out)
		}
	} else {
		b, err := os.ReadFile(filepath.Join(c.dataDir(node), "postmaster.pid"))
		if err != nil {
			c.t.Fatal(err)
		}
		pm, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	}
	return append([]int{pm}, proc.Children(pm)...)
}

// signalAll sends sig to pids, failing on the postmaster (the first).
func (c *cluster) signalAll(pids []int, sig syscall.Signal) {
	c.t.Helper()
	for i, p := range pids {
		if err := syscall.Kill(p, sig); err != nil && i == 0 {
			c.t.Fatalf("%v to postmaster %d: %v", sig, p, err)
		}
	}
}

// pause stops a node's postmaster and children with SIGSTOP, as a frozen
// host or a stalled disk would; the returned function continues them
// (once, also at cleanup, so that teardown is never stuck on them).
func (c *cluster) pause(node string) (resume func()) {
	c.t.Helper()
	pids := c.postgresPids(node)
	c.signalAll(pids, syscall.SIGSTOP)
	var once sync.Once
	resume = func() {
		once.Do(func() {
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGCONT)
			}
		})
	}
	c.t.Cleanup(resume)
	return resume
}

// killPostmaster kills a node's postmaster with SIGKILL, its host or
// container left running: PostgreSQL crashed, the runtime still answers.
func (c *cluster) killPostmaster(node string) {
	c.t.Helper()
	pids := c.postgresPids(node)
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill -9 the postmaster of %s: %v", node, err)
	}
}

// stopCatalog kills the managed redis-server with SIGKILL and keeps it
// away until the returned function is called, whatever heals it meanwhile
// (the watcher starts a managed catalog that does not answer): here its
// port is held by a listener that drops every connection; on Docker its
// container is paused (the published port then takes connections that
// go nowhere). The returned function lets it come back: the watcher's
// healing starts it within a few seconds, or else the test does, as an
// operator would, with the redis.conf pgha wrote. It reports who did.
func (c *cluster) stopCatalog(ctx context.Context) (back func() string) {
	c.t.Helper()
	var release, start func()
	if c.rt == "docker" {
		name := c.container("redis")
		docker(c.t, "exec", "-u", "root", name, "sh", "-c", "kill -9 $(cat /data/redis.pid)")
		docker(c.t, "pause", name)
		c.t.Cleanup(func() { _ = exec.Command("docker", "unpause", name).Run() })
		release = func() { docker(c.t, "unpause", name) }
		start = func() { docker(c.t, "exec", "-u", "root", name, "redis-server", "/data/redis.conf") }
	} else {
		dir := filepath.Join(c.dir, "data", "redis")
		b, err := os.ReadFile(filepath.Join(dir, "redis.pid"))
		if err != nil {
			c.t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			c.t.Fatalf("kill -9 redis-server %d: %v", pid, err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", c.redis)
		var ln net.Listener
		eventually(c.t, 10*time.Second, func() error {
			var err error
			ln, err = net.Listen("tcp", addr)
			return err
		})
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				conn.Close()
			}
		}()
		c.t.Cleanup(func() { ln.Close() })
		release = func() { ln.Close() }
		start = func() {
			cmd := testenv.Command(c.t, "redis-server", filepath.Join(dir, "redis.conf"))
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				c.t.Fatalf("start redis-server again: %v\n%s", err, out)
			}
		}
	}
	return func() string {
		release()
		deadline := time.Now().Add(8 * time.Second)
		for time.Now().Before(deadline) {
			if c.catalogUp(ctx) == nil {
				return "started by the watcher"
			}
			time.Sleep(200 * time.Millisecond)
		}
		start()
		return "started by hand"
	}
}

// catalogUp reports whether the managed catalog answers a ping.
func (c *cluster) catalogUp(ctx context.Context) error {
	cat := c.catalog()
	defer cat.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return cat.Ping(pctx)
}

// setPolicy rewrites the failover block and replaces (or adds) the watch
// block of the cluster file.
func (c *cluster) setPolicy(failover, watch string) {
	c.t.Helper()
	b, err := os.ReadFile(c.file)
	if err != nil {
		c.t.Fatal(err)
	}
	src := string(b)
	fo := regexp.MustCompile(`(?s)  failover \{.*?\n  \}\n`)
	if !fo.MatchString(src) {
		c.t.Fatalf("no failover block in %s:\n%s", c.file, src)
	}
	src = fo.ReplaceAllLiteralString(src, "  failover {\n"+indent(failover)+"  }\n")
	src = regexp.MustCompile(`(?s)  watch \{.*?\n  \}\n`).ReplaceAllLiteralString(src, "")
	if watch != "" {
		i := strings.LastIndex(src, "}")
		src = src[:i] + "  watch {\n" + indent(watch) + "  }\n}\n"
	}
	c.write(src)
}

func indent(block string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		b.WriteString("    " + strings.TrimSpace(l) + "\n")
	}
	return b.String()
}

// declare rewrites the file's primary.
func (c *cluster) declare(node string) {
	c.t.Helper()
	b, err := os.ReadFile(c.file)
	if err != nil {
		c.t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^  primary = "[^"]*"`)
	if !re.Match(b) {
		c.t.Fatalf("no primary line in %s", c.file)
	}
	c.write(re.ReplaceAllString(string(b), `  primary = "`+node+`"`))
}

// streamsFrom waits until node's WAL receiver streams from upstream.
func (c *cluster) streamsFrom(ctx context.Context, t *testing.T, node, upstream string, d time.Duration) {
	t.Helper()
	eventually(t, d, func() error { return c.streaming(ctx, node, upstream) })
}

// streamingPrimary is the one node that takes writes, every other node
// streaming from it: the cluster side of the scenarios' "settled" (each
// adds what its store should record).
func (c *cluster) streamingPrimary(ctx context.Context) (string, error) {
	p := ""
	for _, n := range c.names {
		if c.writable(ctx, n) {
			if p != "" {
				return "", fmt.Errorf("%s and %s both writable", p, n)
			}
			p = n
		}
	}
	if p == "" {
		return "", fmt.Errorf("no writable primary")
	}
	for _, n := range c.names {
		if n != p {
			if err := c.streaming(ctx, n, p); err != nil {
				return "", err
			}
		}
	}
	return p, nil
}

// streaming says why node's WAL receiver does not stream from upstream
// (nil when it does).
func (c *cluster) streaming(ctx context.Context, node, upstream string) error {
	want := c.peer(upstream)
	cfg, _ := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres %s connect_timeout=1", c.port(node), c.sslParams()))
	cfg.Password = superPW
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(qctx, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", node, err)
	}
	defer conn.Close(context.Background())
	var status, host string
	var port int
	err = conn.QueryRow(qctx, "SELECT status, coalesce(sender_host, ''), coalesce(sender_port, 0) FROM pg_stat_wal_receiver").Scan(&status, &host, &port)
	if err != nil {
		return fmt.Errorf("%s has no WAL receiver: %w", node, err)
	}
	if status != "streaming" || fmt.Sprintf("%s:%d", host, port) != want {
		return fmt.Errorf("%s: WAL receiver %s from %s:%d, want streaming from %s", node, status, host, port, want)
	}
	return nil
}

// writable reports whether node answers and is not in recovery.
func (c *cluster) writable(ctx context.Context, node string) bool {
	cfg, _ := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres %s connect_timeout=1", c.port(node), c.sslParams()))
	cfg.Password = superPW
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(qctx, cfg)
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	var rec bool
	return conn.QueryRow(qctx, "SELECT pg_is_in_recovery()").Scan(&rec) == nil && !rec
}

// TestLocalWatchHarness and TestDockerWatchHarness prove the scenarios'
// instruments can fail: the poll sees a standby promoted by hand next to
// the primary, the multi-host writer measures the gap a pause makes and a
// paused primary acknowledges nothing (SIGSTOP reaches the postmaster and
// its children, in a container too), and a stopped catalog does not
// answer until released.
func TestLocalWatchHarness(t *testing.T) {
	t.Parallel()
	watchHarness(t, "local")
}

func TestDockerWatchHarness(t *testing.T) {
	t.Parallel()
	watchHarness(t, "docker")
}

func watchHarness(t *testing.T, rt string) {
	c := newCluster(t, rt, 2)
	ctx := context.Background()
	c.mustPgha("apply", "-auto-approve")
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE ha_writes (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	w := startAppWriter(ctx, c)
	w.waitAcks(t, 50, 15*time.Second)
	poll := startPrimaryPoll(ctx, c)
	if per := w.walPerWrite(ctx, t, "db1"); per < 20 || per > 2000 {
		t.Errorf("%.0f bytes of WAL per write", per)
	}

	resume := c.pause("db1")
	t0 := time.Now()
	time.Sleep(time.Second)
	if n := len(w.snapshot()); w.snapshot()[n-1].at.After(t0.Add(100 * time.Millisecond)) {
		t.Errorf("a write was acknowledged by a paused primary")
	}
	resume()
	g := w.gapAfter(t, t0, c.port("db1"), 10*time.Second)
	if g.d < time.Second {
		t.Errorf("a 1 s pause made a %s", g)
	}

	back := c.stopCatalog(ctx)
	if err := c.catalogUp(ctx); err == nil {
		t.Error("the catalog answers while stopped")
	}
	back()
	eventually(t, 10*time.Second, func() error { return c.catalogUp(ctx) })

	// A split brain by hand: db2 promoted while db1 runs.
	if _, err := c.conn(ctx, "db2").Exec(ctx, "SELECT pg_promote()"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if !c.writable(ctx, "db2") {
			return errors.New("db2 not promoted yet")
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	acked := w.finish()
	two := poll.finish(t)
	if len(two) == 0 {
		t.Fatal("the poll did not see db1 and db2 writable together")
	}
	if m := missing(ctx, t, c, "db1", acked); len(m) > 0 {
		t.Errorf("%d acknowledged writes missing on db1: %v", len(m), m)
	}
	t.Logf("pause: %s; split brain seen %d times, first %s; %d acks", g, len(two), two[0], len(acked))
}
