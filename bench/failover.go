package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgha/pgha/internal/proc"
)

// The failover benchmark (-failover): kill -9 of the primary of a
// three-node cluster under a writing client, then the time to the first
// acknowledged write on the new primary and the acknowledged writes that
// the surviving primary does not have. The same client and the same crash
// are run against Patroni on etcd and pg_auto_failover (both at their
// defaults, from Debian's packages) and against `pgha watch` at its
// default policy on both runtimes, in one run, so the figures share the
// machine and its load.

// haCluster is one system under test: three PostgreSQL nodes and whatever
// keeps them available.
type haCluster interface {
	// label names the table row: tool, runtime, policy.
	label() (tool, runtime, policy string)
	// connString is the client's multi-host connection string (without
	// target_session_attrs, which the writer adds).
	connString() string
	ports() []int
	// crash kills the node listening on port the way the row says (a host
	// crash for the baselines, the PostgreSQL instance alone for pgha).
	crash(port int) error
	// healthy returns nil once the cluster has one primary and two
	// standbys streaming from it, as its own tool sees it; recover brings
	// the crashed node back into the cluster first.
	recover(ctx context.Context, crashed int) error
	healthy(ctx context.Context) error
	close()
}

// runResult is one kill -9 and what the client saw.
type runResult struct {
	took      time.Duration // kill → first acknowledged write on a connection opened after it
	lost      int           // acknowledged writes missing on the surviving primary
	acked     int
	failover  bool // the first write after the kill landed on another node
	timedOut  bool
	loadAvg   string
	primaryAt int  // the port of the node that acknowledged the first write
	moved     bool // the primary moved again after that first write
}

// measureFailover runs the kill -9 `runs` times against c, waiting for the
// cluster to be whole again before each run.
func measureFailover(ctx context.Context, c haCluster, runs int, limit time.Duration) ([]runResult, error) {
	var out []runResult
	for i := range runs {
		if err := c.healthy(ctx); err != nil {
			return out, fmt.Errorf("before run %d: %w", i+1, err)
		}
		primary, err := findPrimary(ctx, c)
		if err != nil {
			return out, fmt.Errorf("before run %d: %w", i+1, err)
		}
		w := startWriter(ctx, c.connString())
		// A second of steady writes before the crash: the client is
		// connected and the standbys stream what it writes.
		if err := w.waitAcks(ctx, 200, 10*time.Second); err != nil {
			w.stop()
			return out, fmt.Errorf("run %d: the writer did not get going: %w", i+1, err)
		}
		sleepCtx(ctx, time.Second)
		load := loadAverage()
		killAt := time.Now()
		w.markCrash(killAt)
		if err := c.crash(primary); err != nil {
			w.stop()
			return out, fmt.Errorf("run %d: crash: %w", i+1, err)
		}
		r := runResult{loadAvg: load}
		first, ok := w.waitFirstAfterCrash(ctx, limit)
		if !ok {
			r.timedOut = true
			r.took = limit
		} else {
			r.took = first.at.Sub(killAt)
			r.primaryAt = first.port
			r.failover = first.port != primary
			// Keep writing a little on the new primary, as an application
			// would.
			sleepCtx(ctx, time.Second)
		}
		acked := w.stop()
		// The crashed node rejoins; then the writes are counted on the
		// primary that survived all of it, which catches a primary that
		// moved again after the first write.
		if err := c.recover(ctx, primary); err != nil {
			return out, fmt.Errorf("after run %d: rejoin the crashed node: %w", i+1, err)
		}
		surv, err := findPrimary(ctx, c)
		if err != nil {
			return out, fmt.Errorf("after run %d: %w", i+1, err)
		}
		have, err := countPresent(ctx, c, surv, acked)
		if err != nil {
			return out, fmt.Errorf("run %d: count the writes on the surviving primary: %w", i+1, err)
		}
		r.lost = len(acked) - have
		r.acked = len(acked)
		tool, rt, _ := c.label()
		what := "restart in place"
		if r.failover {
			what = fmt.Sprintf("failover %d→%d", primary, r.primaryAt)
		}
		if r.timedOut {
			what = "NO WRITE within " + limit.String()
		}
		if !r.timedOut && surv != r.primaryAt {
			r.moved = true
			what += fmt.Sprintf(", then the primary moved again to %d", surv)
		}
		fmt.Printf("  %s/%s run %d: %.2f s to the first write (%s), %d of %d acknowledged writes lost, load %s\n",
			tool, rt, i+1, r.took.Seconds(), what, r.lost, r.acked, load)
		out = append(out, r)
	}
	return out, nil
}

// findPrimary asks every node whether it is in recovery: the one that is
// not is the primary.
func findPrimary(ctx context.Context, c haCluster) (int, error) {
	var found []int
	for _, p := range c.ports() {
		conn, err := connectOne(ctx, c, p)
		if err != nil {
			continue
		}
		var rec bool
		err = conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec)
		conn.Close(ctx)
		if err == nil && !rec {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("want one primary, found %d (ports %v)", len(found), found)
	}
	return found[0], nil
}

// connectOne connects to the single node on port, with the cluster's
// credentials and TLS settings.
func connectOne(ctx context.Context, c haCluster, port int) (*pgx.Conn, error) {
	return connectWithin(ctx, c.connString(), port, 3*time.Second)
}

// connectWithin connects to the single node on port of the multi-host
// connection string connString, giving up after limit.
func connectWithin(ctx context.Context, connString string, port int, limit time.Duration) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	var fb []*pgconn.FallbackConfig
	if int(cfg.Port) == port {
		fb = append(fb, &pgconn.FallbackConfig{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig})
	}
	for _, f := range cfg.Fallbacks {
		if int(f.Port) == port {
			fb = append(fb, f)
		}
	}
	if len(fb) == 0 {
		return nil, fmt.Errorf("port %d is not in the connection string", port)
	}
	cfg.Host, cfg.Port, cfg.TLSConfig = fb[0].Host, fb[0].Port, fb[0].TLSConfig
	cfg.Fallbacks = nil
	cfg.ValidateConnect = nil
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return pgx.ConnectConfig(cctx, cfg)
}

// streamingStandbys counts the standbys streaming from the primary on port
// and the largest replay lag among them in bytes.
func streamingStandbys(ctx context.Context, c haCluster, port int) (int, int64, error) {
	conn, err := connectOne(ctx, c, port)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(ctx)
	var n int
	var lag int64
	err = conn.QueryRow(ctx, `SELECT count(*), coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::bigint
		FROM pg_stat_replication WHERE state = 'streaming'`).Scan(&n, &lag)
	return n, lag, err
}

// waitStreaming waits until one node is primary with two standbys
// streaming from it and replaying within 1 MB (Patroni's default
// maximum_lag_on_failover), on top of whatever the tool's own check is.
func waitStreaming(ctx context.Context, c haCluster, limit time.Duration, toolCheck func() error) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		last = func() error {
			p, err := findPrimary(ctx, c)
			if err != nil {
				return err
			}
			n, lag, err := streamingStandbys(ctx, c, p)
			if err != nil {
				return err
			}
			if n != 2 || lag > 1<<20 {
				return fmt.Errorf("primary %d: %d standbys streaming, replay lag %d bytes", p, n, lag)
			}
			if toolCheck != nil {
				return toolCheck()
			}
			return nil
		}()
		if last == nil {
			return nil
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
	return fmt.Errorf("not healthy within %s: %w", limit, last)
}

// countPresent counts how many of ids the primary on port has.
func countPresent(ctx context.Context, c haCluster, port int, ids []int64) (int, error) {
	var last error
	for range 20 { // the new primary may still be settling: retry briefly
		conn, err := connectOne(ctx, c, port)
		if err == nil {
			var n int
			err = conn.QueryRow(ctx, "SELECT count(*) FROM bench_writes WHERE id = ANY($1)", ids).Scan(&n)
			conn.Close(ctx)
			if err == nil {
				return n, nil
			}
		}
		last = err
		sleepCtx(ctx, 250*time.Millisecond)
	}
	return 0, last
}

// ack is one acknowledged insert: its id, when the acknowledgement
// arrived, the server that gave it and when that connection was opened.
type ack struct {
	id     int64
	at     time.Time
	port   int
	connAt time.Time
}

// writer inserts increasing ids as fast as it can through a multi-host
// connection string with target_session_attrs=read-write, with short
// timeouts, reconnecting on any error, as an application with a sane
// driver configuration does.
type writer struct {
	mu      sync.Mutex
	acks    []ack
	crashAt time.Time
	first   chan ack // the first acknowledgement on a connection opened after crashAt
	sent    bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// lastID is the last id a writer inserted: the ids stay unique across the
// runs on one cluster (one writer runs at a time).
var lastID int64

func startWriter(parent context.Context, connString string) *writer {
	return startPacedWriter(parent, connString, 0)
}

// startPacedWriter is startWriter inserting at most one row every `every`
// (0: as fast as it can).
func startPacedWriter(parent context.Context, connString string, every time.Duration) *writer {
	ctx, cancel := context.WithCancel(parent)
	w := &writer{cancel: cancel, done: make(chan struct{}), first: make(chan ack, 1)}
	go func() {
		defer close(w.done)
		var conn *pgx.Conn
		var connAt time.Time
		var port int
		for ctx.Err() == nil {
			if conn == nil {
				cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
				c, err := pgx.Connect(cctx, connString+" target_session_attrs=read-write")
				ccancel()
				if err != nil {
					sleepCtx(ctx, 10*time.Millisecond)
					continue
				}
				conn, connAt = c, time.Now()
				_, ps, _ := net.SplitHostPort(c.PgConn().Conn().RemoteAddr().String())
				port, _ = strconv.Atoi(ps)
			}
			if every > 0 {
				sleepCtx(ctx, every)
			}
			lastID++
			id := lastID
			ictx, icancel := context.WithTimeout(ctx, time.Second)
			_, err := conn.Exec(ictx, "INSERT INTO bench_writes (id) VALUES ($1)", id)
			icancel()
			if err != nil {
				conn.Close(context.Background())
				conn = nil
				continue
			}
			a := ack{id: id, at: time.Now(), port: port, connAt: connAt}
			w.mu.Lock()
			w.acks = append(w.acks, a)
			if !w.crashAt.IsZero() && connAt.After(w.crashAt) && !w.sent {
				w.sent = true
				w.first <- a
			}
			w.mu.Unlock()
		}
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	return w
}

func (w *writer) markCrash(t time.Time) {
	w.mu.Lock()
	w.crashAt = t
	w.mu.Unlock()
}

func (w *writer) waitAcks(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		w.mu.Lock()
		have := len(w.acks)
		w.mu.Unlock()
		if have >= n {
			return nil
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
	return errors.New("too few acknowledged writes")
}

func (w *writer) waitFirstAfterCrash(ctx context.Context, limit time.Duration) (ack, bool) {
	select {
	case a := <-w.first:
		return a, true
	case <-time.After(limit):
	case <-ctx.Done():
	}
	return ack{}, false
}

// stop ends the writer and returns the ids it saw acknowledged.
func (w *writer) stop() []int64 {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]int64, len(w.acks))
	for i, a := range w.acks {
		ids[i] = a.id
	}
	return ids
}

// failoverRow is one line of the table.
type failoverRow struct {
	tool, runtime, policy, note string
	runs                        []runResult
	err                         error
}

func printFailoverTable(rows []failoverRow, runs int, notes []string) {
	fmt.Printf("\nkill -9 of the primary under a writing client (multi-host, target_session_attrs=read-write): time to the first acknowledged write\n")
	fmt.Printf("on the new primary, and acknowledged writes missing on it afterwards; %d runs each, same machine, same run\n\n", runs)
	fmt.Printf("%-18s %-8s %-46s %9s %9s %12s %-22s %-11s %s\n", "tool", "runtime", "policy / crash", "median s", "max s", "lost med/max", "outcome", "load 1m", "target")
	var patroniMedian time.Duration
	patroniLostMax := -1
	for _, r := range rows {
		if r.tool == "Patroni" && len(r.runs) > 0 {
			patroniMedian, _ = medianMax(r.runs, func(x runResult) time.Duration { return x.took })
			_, lm := medianMaxInt(r.runs)
			patroniLostMax = lm
		}
	}
	for _, r := range rows {
		if len(r.runs) == 0 {
			fmt.Printf("%-18s %-8s %-46s %s\n", r.tool, r.runtime, r.policy, "FAILED: "+errString(r.err))
			continue
		}
		med, mx := medianMax(r.runs, func(x runResult) time.Duration { return x.took })
		lmed, lmax := medianMaxInt(r.runs)
		fo, rs, to := 0, 0, 0
		for _, x := range r.runs {
			switch {
			case x.timedOut:
				to++
			case x.failover:
				fo++
			default:
				rs++
			}
		}
		var outcome []string
		if fo > 0 {
			outcome = append(outcome, fmt.Sprintf("failover %d/%d", fo, len(r.runs)))
		}
		if rs > 0 {
			outcome = append(outcome, fmt.Sprintf("restart %d/%d", rs, len(r.runs)))
		}
		if to > 0 {
			outcome = append(outcome, fmt.Sprintf("timeout %d/%d", to, len(r.runs)))
		}
		if mv := countIf(r.runs, func(x runResult) bool { return x.moved }); mv > 0 {
			outcome = append(outcome, fmt.Sprintf("MOVED AGAIN %d/%d", mv, len(r.runs)))
		}
		target := "-"
		if r.tool == "pgha watch" {
			ok := med <= 3*time.Second && mx <= 5*time.Second && to == 0
			if patroniMedian > 0 {
				ok = ok && med < patroniMedian/8
			}
			if patroniLostMax >= 0 {
				ok = ok && lmax <= patroniLostMax
			}
			verdict := "met"
			if !ok {
				verdict = "MISSED"
			}
			target = "med<=3s max<=5s <Patroni/8, lost<=Patroni: " + verdict
		}
		runsNote := ""
		if len(r.runs) < runs {
			runsNote = fmt.Sprintf(" (%d of %d runs: %s)", len(r.runs), runs, errString(r.err))
		}
		var loads []float64
		for _, x := range r.runs {
			l, _ := strconv.ParseFloat(strings.Fields(x.loadAvg + " ?")[0], 64)
			loads = append(loads, l)
		}
		slices.Sort(loads)
		loadRange := fmt.Sprintf("%.1f-%.1f", loads[0], loads[len(loads)-1])
		fmt.Printf("%-18s %-8s %-46s %9.2f %9.2f %12s %-22s %-11s %s%s\n", r.tool, r.runtime, r.policy, med.Seconds(), mx.Seconds(),
			fmt.Sprintf("%d/%d", lmed, lmax), strings.Join(outcome, " "), loadRange, target, runsNote)
	}
	fmt.Println()
	for _, n := range notes {
		fmt.Println("note: " + n)
	}
	for _, r := range rows {
		if r.note != "" {
			fmt.Printf("note (%s, %s): %s\n", r.tool, r.runtime, r.note)
		}
	}
}

func countIf(rs []runResult, f func(runResult) bool) int {
	n := 0
	for _, r := range rs {
		if f(r) {
			n++
		}
	}
	return n
}

func errString(err error) string {
	if err == nil {
		return "no result"
	}
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func medianMax(rs []runResult, f func(runResult) time.Duration) (time.Duration, time.Duration) {
	var d []time.Duration
	for _, r := range rs {
		d = append(d, f(r))
	}
	slices.Sort(d)
	return median(d), d[len(d)-1]
}

func median(d []time.Duration) time.Duration {
	if len(d)%2 == 1 {
		return d[len(d)/2]
	}
	return (d[len(d)/2-1] + d[len(d)/2]) / 2
}

func medianMaxInt(rs []runResult) (int, int) {
	var v []int
	for _, r := range rs {
		v = append(v, r.lost)
	}
	sort.Ints(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return m, v[len(v)-1]
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// ensurePackages installs the Debian packages that are missing, with
// apt-get from the machine's configured archive (the bench runs as root,
// as `make setup` does).
func ensurePackages(pkgs ...string) error {
	var missing []string
	for _, p := range pkgs {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", p).Output()
		if err != nil || !strings.Contains(string(out), "install ok installed") {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages %v: run as root or apt-get install them", missing)
	}
	fmt.Printf("failover: installing %s with apt-get...\n", strings.Join(missing, " "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", args[0], err, out)
		}
	}
	return nil
}

// postgresUser is the OS account the servers and their agents run as:
// PostgreSQL refuses to run as root.
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the postgres OS user: %w (run `make setup`)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// procs starts and ends the processes of a baseline: each in its own
// process group (a Ctrl-C to the bench does not reach them; the bench
// stops them itself), as the postgres user, logging to a file.
type procs struct {
	cred *syscall.Credential
	dir  string
	env  []string
	mu   sync.Mutex
	all  []*exec.Cmd
}

func (p *procs) start(logName string, name string, args ...string) (*exec.Cmd, error) {
	logf, err := os.OpenFile(filepath.Join(p.dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	p.mu.Lock()
	p.all = append(p.all, cmd)
	p.mu.Unlock()
	return cmd, nil
}

// run runs a command to completion as the postgres user.
func (p *procs) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out, nil
}

// killAll ends every process the baseline started, and every PostgreSQL
// instance under its directory, with SIGKILL: nothing of it is kept.
func (p *procs) killAll(dataDirs ...string) {
	p.mu.Lock()
	var roots []int
	for _, c := range p.all {
		if c.Process != nil {
			roots = append(roots, c.Process.Pid)
		}
	}
	p.mu.Unlock()
	for _, d := range dataDirs {
		if pid := postmasterPID(d); pid > 0 {
			roots = append(roots, pid)
		}
	}
	killTrees(roots...)
}

// postmasterPID reads the postmaster's pid from a data directory (0 when
// there is none, or when that pid is no postgres process any more: a stale
// file's pid may belong to anything by now).
func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
		return 0
	}
	return pid
}

// killTrees sends SIGKILL to each root and all its descendants at once, as
// a power cut would: the tree is read first, so that children re-parented
// by a parent's death are not missed.
func killTrees(roots ...int) {
	for _, pid := range proc.Tree(roots...) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// reapPostgres makes the bench the reaper of the PostgreSQL processes it
// (or pgha, Patroni, pg_autoctl under it) started, as init is on a host.
// A killed postmaster whose pid nobody reaps stays a zombie, and a new
// postmaster on its data directory then refuses to start ("lock file
// postmaster.pid already exists": the old pid still answers kill 0):
// on a machine whose pid 1 reaps only every few seconds that is the
// machine measured, not the tool. Only processes named postgres are
// reaped, which the bench never runs itself, so no exec.Cmd's Wait loses
// its child.
func reapPostgres(ctx context.Context) {
	const prSetChildSubreaper = 36
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		fmt.Fprintln(os.Stderr, "bench: cannot become the child subreaper:", errno)
		return
	}
	self := os.Getpid()
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, p := range proc.All() {
				if p.State != 'Z' || p.Comm != "postgres" || p.PPID != self {
					continue
				}
				var ws syscall.WaitStatus
				_, _ = syscall.Wait4(p.PID, &ws, syscall.WNOHANG, nil)
			}
		}
	}()
}
