package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/providers/redis"
)

// selfFence is the agent block's bound in TestLocalAgentPartition.
const selfFence = 3 * time.Second

// netHost is a host emulated by a network namespace: the agent of one
// node runs in it and reaches the catalog over a veth pair (RootIP on
// this side, its own IP inside); its PostgreSQL stays in the root
// namespace, where the clients and the watcher reach it on loopback, and
// the agent drives it through files, pg_control and signals, which no
// network namespace cuts. (pgha turns PostgreSQL's Unix socket off,
// unix_socket_directories empty, so there is no socket to use instead.)
type netHost struct {
	t            *testing.T
	ns, dev      string // the namespace, the veth end inside it
	RootIP, IP   string
	cut          bool
	cutMu        sync.Mutex
	rootDevLabel string
}

// newNetHost makes the namespace and the veth pair, named and addressed
// after id (a port of this test: unique among the tests running at once),
// and removes them when the test ends.
func newNetHost(t *testing.T, id int) *netHost {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip (iproute2) not found; run `make setup`")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatal("iptables not found; run `make setup`")
	}
	h := &netHost{t: t, ns: fmt.Sprintf("pgha-ag%d", id), dev: fmt.Sprintf("pag%db", id), rootDevLabel: fmt.Sprintf("pag%da", id)}
	// A /30 of 10.251.0.0/16 per id: 16384 of them, id (a free port) picks one.
	n := (id % 16384) * 4
	h.RootIP = fmt.Sprintf("10.251.%d.%d", n/256, n%256+1)
	h.IP = fmt.Sprintf("10.251.%d.%d", n/256, n%256+2)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", h.ns)
	t.Cleanup(func() {
		// Deleting the namespace deletes the veth pair with it.
		_ = exec.Command("ip", "netns", "del", h.ns).Run()
		_ = exec.Command("ip", "link", "del", h.rootDevLabel).Run()
	})
	run("ip", "link", "add", h.rootDevLabel, "type", "veth", "peer", "name", h.dev)
	run("ip", "link", "set", h.dev, "netns", h.ns)
	run("ip", "addr", "add", h.RootIP+"/30", "dev", h.rootDevLabel)
	run("ip", "link", "set", h.rootDevLabel, "up")
	run("ip", "netns", "exec", h.ns, "ip", "addr", "add", h.IP+"/30", "dev", h.dev)
	run("ip", "netns", "exec", h.ns, "ip", "link", "set", h.dev, "up")
	run("ip", "netns", "exec", h.ns, "ip", "link", "set", "lo", "up")
	return h
}

// setCut drops (or lets through again) every packet between the host and
// the rest of the machine, inside the namespace: a partition, not a
// refused connection.
func (h *netHost) setCut(on bool) {
	h.t.Helper()
	h.cutMu.Lock()
	defer h.cutMu.Unlock()
	if h.cut == on {
		return
	}
	op := "-A"
	if !on {
		op = "-D"
	}
	for _, rule := range [][]string{{"INPUT", "-i", h.dev}, {"OUTPUT", "-o", h.dev}} {
		args := append([]string{"netns", "exec", h.ns, "iptables", op, rule[0]}, append(rule[1:], "-j", "DROP")...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			h.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	h.cut = on
}

// startAgent runs `pgha agent -node NODE`, in h's namespace when h is not
// nil.
func (c *cluster) startAgent(node string, h *netHost) *watchProc {
	c.t.Helper()
	cmd := c.command(context.Background(), "agent", "-node", node)
	if h != nil {
		cmd.Args = append([]string{"ip", "netns", "exec", h.ns}, cmd.Args...)
		cmd.Path = "/usr/sbin/ip"
		if p, err := exec.LookPath("ip"); err == nil {
			cmd.Path = p
		}
	}
	return c.startCmd("agent "+node, cmd)
}

// authority is the catalog of TestLocalAgentPartition: a redis-server
// the test runs itself (managed = false: pgha's managed Redis listens on
// loopback only), bound to the root end of the host's veth so that the
// agent in the namespace reaches it, with a password and an append-only
// file so that a restart keeps the record.
type authority struct {
	t        *testing.T
	addr, pw string
	dir      string
	cmd      *exec.Cmd
}

func startAuthority(t *testing.T, host string, port int) *authority {
	t.Helper()
	a := &authority{t: t, addr: fmt.Sprintf("%s:%d", host, port), pw: "agent-catalog-pw-" + strconv.Itoa(port), dir: t.TempDir()}
	a.start()
	t.Cleanup(a.kill)
	return a
}

func (a *authority) start() {
	a.t.Helper()
	host, port, _ := strings.Cut(a.addr, ":")
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		a.t.Fatal("redis-server not found; run `make setup`")
	}
	a.cmd = exec.Command(bin, "--bind", host, "--port", port, "--requirepass", a.pw, "--save", "", "--appendonly", "yes",
		"--appendfsync", "always", "--dir", a.dir)
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	eventually(a.t, 10*time.Second, func() error {
		cat := redis.New(a.addr, a.pw, 0, "ping")
		defer cat.Close()
		pctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return cat.Ping(pctx)
	})
}

func (a *authority) kill() {
	if a.cmd != nil && a.cmd.Process != nil {
		_ = a.cmd.Process.Kill()
		_ = a.cmd.Wait()
		a.cmd = nil
	}
}

// probeAck is one commit a node acknowledged to the 50 ms probe, or
// refused.
type probeAck struct {
	node string
	at   time.Time
	ok   bool
	err  string
}

// commitProbe commits a row on every node every 50 ms, each over its own
// connection, and keeps every answer: two nodes acknowledging commits in
// the same period is what must never be seen.
type commitProbe struct {
	mu   sync.Mutex
	acks []probeAck
	stop chan struct{}
	wg   sync.WaitGroup
}

func startCommitProbe(ctx context.Context, c *cluster) *commitProbe {
	p := &commitProbe{stop: make(chan struct{})}
	for _, node := range c.names {
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres %s connect_timeout=1", c.port(node), c.sslParams()))
		if err != nil {
			c.t.Fatal(err)
		}
		cfg.Password = superPW
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(context.Background())
				}
			}()
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-p.stop:
					return
				case <-t.C:
				}
				if conn == nil {
					cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
					conn, err = pgx.ConnectConfig(cctx, cfg)
					cancel()
					if err != nil {
						conn = nil
						p.add(probeAck{node: node, at: time.Now(), err: err.Error()})
						continue
					}
				}
				ictx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				_, err := conn.Exec(ictx, "INSERT INTO agent_probe VALUES ($1, now())", node)
				cancel()
				a := probeAck{node: node, at: time.Now(), ok: err == nil}
				if err != nil {
					a.err = err.Error()
					conn.Close(context.Background())
					conn = nil
				}
				p.add(a)
			}
		}()
	}
	return p
}

func (p *commitProbe) add(a probeAck) {
	p.mu.Lock()
	p.acks = append(p.acks, a)
	p.mu.Unlock()
}

func (p *commitProbe) finish() {
	close(p.stop)
	p.wg.Wait()
}

func (p *commitProbe) since(t0 time.Time) []probeAck {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []probeAck
	for _, a := range p.acks {
		if !a.at.Before(t0) {
			out = append(out, a)
		}
	}
	return out
}

// lastAck is the last commit node acknowledged after t0 (zero: none), and
// firstRefused the first refusal after that.
func (p *commitProbe) lastAck(node string, t0 time.Time) (last time.Time, firstRefused probeAck) {
	for _, a := range p.since(t0) {
		if a.node != node {
			continue
		}
		if a.ok {
			last, firstRefused = a.at, probeAck{}
		} else if firstRefused.at.IsZero() {
			firstRefused = a
		}
	}
	return last, firstRefused
}

// twoWriters finds two nodes acknowledging commits in overlapping
// periods: node X acknowledged at a time when node Y had acknowledged
// before and acknowledged again after. It returns a description, "" when
// the writable node changed hands cleanly.
func (p *commitProbe) twoWriters(t0 time.Time) string {
	acks := p.since(t0)
	first, last := map[string]time.Time{}, map[string]time.Time{}
	for _, a := range acks {
		if !a.ok {
			continue
		}
		if _, ok := first[a.node]; !ok {
			first[a.node] = a.at
		}
		last[a.node] = a.at
	}
	var nodes []string
	for n := range first {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for i, x := range nodes {
		for _, y := range nodes[i+1:] {
			if first[x].Before(last[y]) && first[y].Before(last[x]) {
				return fmt.Sprintf("%s acknowledged commits %s..%s and %s %s..%s", x, first[x].Format("15:04:05.000"), last[x].Format("15:04:05.000"),
					y, first[y].Format("15:04:05.000"), last[y].Format("15:04:05.000"))
			}
		}
	}
	return ""
}

// memberGone polls the member leases every 50 ms and returns when node's
// was first seen absent (zero, and t marked failed, after d). It may run
// in its own goroutine.
func memberGone(ctx context.Context, t *testing.T, cat *redis.Catalog, node string, d time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m, err := cat.Members(ctx)
		if _, held := m[node]; err == nil && !held {
			return time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("the member lease of %s was still held %s later", node, d)
	return time.Time{}
}

// agentCluster is the set-up of the agent partition tests: three local
// nodes with synchronous replication (standbys = 1, strict) and
// primary_crash = "failover", a catalog (the authority) of the test's own
// on the root end of db1's host's veth, `pgha agent` on every node (db1's
// in its host, the others in the root namespace) holding its member
// lease, a watcher leading, and the tables of the writer (ha_writes) and
// of the probe (agent_probe) on db1, the primary.
type agentCluster struct {
	*cluster
	h      *netHost
	auth   *authority
	cat    *redis.Catalog
	agents map[string]*watchProc
	ww     *watchProc
}

func newAgentCluster(t *testing.T) *agentCluster {
	c := newCluster(t, "local", 3)
	ctx := context.Background()
	h := newNetHost(t, c.redis)
	b, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	auth := startAuthority(t, h.RootIP, c.redis)
	// The cluster is destroyed while its catalog still answers (cleanups
	// run last first); the harness's own teardown then finds nothing.
	t.Cleanup(c.teardown)
	if err := os.WriteFile(filepath.Join(c.dir, "catalog.secret"), []byte(auth.pw), 0o600); err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(b), fmt.Sprintf("address = \"127.0.0.1:%d\"\n    managed = true", c.redis),
		fmt.Sprintf("address  = \"%s\"\n    password = file(\"./catalog.secret\")", auth.addr), 1)
	if !strings.Contains(src, auth.addr) {
		t.Fatalf("no catalog address to replace in:\n%s", src)
	}
	src = strings.Replace(src, "  catalog \"redis\" {", fmt.Sprintf("  agent {\n    self_fence = %q\n  }\n  catalog \"redis\" {", selfFence), 1)
	c.write(src)
	c.setSync(true)
	c.setPolicy(policyFailover, watchDefaults)
	c.mustPgha("apply", "-auto-approve")
	if _, err := c.conn(ctx, "db1").Exec(ctx, "CREATE TABLE ha_writes (id int primary key); CREATE TABLE agent_probe (node text, at timestamptz)"); err != nil {
		t.Fatal(err)
	}
	cat := redis.New(auth.addr, auth.pw, 0, c.name)
	t.Cleanup(func() { cat.Close() })

	agents := map[string]*watchProc{"db1": c.startAgent("db1", h)}
	for _, n := range c.names[1:] {
		agents[n] = c.startAgent(n, nil)
	}
	for _, n := range c.names {
		agents[n].waitLog(t, 0, "member lease held", map[string]string{"node": n}, 20*time.Second)
	}
	st := c.mustPgha("status")
	if !strings.Contains(st.stdout, "Agents (member leases): db1 held") {
		t.Fatalf("status does not show the agents:\n%s", st.stdout)
	}
	ww := c.startWatch("w1")
	ww.waitLog(t, 0, "leader acquired", nil, 20*time.Second)

	return &agentCluster{cluster: c, h: h, auth: auth, cat: cat, agents: agents, ww: ww}
}

// settled waits until one node is the writable primary with every other
// streaming from it, the catalog records it with a confirmed synchronous
// set and no pending rejoin, and every agent holds its member lease; it
// returns the primary.
func (a *agentCluster) settled(t *testing.T) string {
	t.Helper()
	c, cat, ctx := a.cluster, a.cat, context.Background()
	var p string
	eventually(t, 120*time.Second, func() error {
		var err error
		if p, err = c.streamingPrimary(ctx); err != nil {
			return err
		}
		_, rec, _, err := cat.Observe(ctx)
		switch {
		case err != nil:
			return err
		case rec == nil || rec.Primary != p || len(rec.Rejoin) > 0 || !rec.Sync.Confirmed():
			return fmt.Errorf("the catalog records %+v, primary %s", rec, p)
		}
		m, err := cat.Members(ctx)
		if err != nil || len(m) != len(c.names) {
			return fmt.Errorf("member leases %v (%v), want every node's", m, err)
		}
		return nil
	})
	return p
}

// TestLocalAgentPartition: issue 14's self-fencing, with each node's
// `pgha agent`, db1's in a network namespace of its own (its host), a
// watcher, synchronous replication (standbys = 1, strict), a writing
// client and a 50 ms commit probe of every node, all on loopback in the
// root namespace:
//
//   - db1's host cut off from the authority but not from its clients: db1
//     stops acknowledging writes within self_fence; the watcher promotes
//     only after db1's member lease expired; never two nodes
//     acknowledging commits; no acknowledged write lost; once the cut
//     heals, the fence is in the catalog history and db1 rejoins.
//   - the watcher cut off (SIGSTOP for 2 x self_fence): the agents fence
//     nothing, the primary keeps acknowledging writes.
//   - the authority down (Redis killed): the primary's agent fences it
//     within self_fence; the standbys are left alone; once the catalog
//     is back the watcher fails over and no acknowledged write is lost.
func TestLocalAgentPartition(t *testing.T) {
	ac := newAgentCluster(t)
	c, h, auth, cat, agents, ww, settled := ac.cluster, ac.h, ac.auth, ac.cat, ac.agents, ac.ww, ac.settled
	ctx := context.Background()

	w := startAppWriter(ctx, c)
	probe := startCommitProbe(ctx, c)
	defer probe.finish()
	var figures []string
	defer func() {
		for _, f := range figures {
			t.Log(f)
		}
	}()
	if p := settled(t); p != "db1" {
		t.Fatalf("the primary is %s, want db1", p)
	}
	w.waitAcks(t, 50, 15*time.Second)

	t.Run("primary cut off from the authority but not from clients", func(t *testing.T) {
		m, am := ww.mark(), agents["db1"].mark()
		t0 := time.Now()
		h.setCut(true)
		defer h.setCut(false)
		goneCh := make(chan time.Time, 1)
		go func() { goneCh <- memberGone(ctx, t, cat, "db1", 3*selfFence) }()
		fence := agents["db1"].waitLog(t, am, "fence", map[string]string{"node": "db1"}, 2*selfFence)
		gone := <-goneCh
		if gone.IsZero() {
			t.FailNow()
		}
		fo := ww.waitLog(t, m, "failover", map[string]string{"from": "db1"}, 60*time.Second)
		to := fo.field("to")
		done := ww.waitLog(t, m, "apply", map[string]string{"operation": "failover"}, 60*time.Second)
		if done.field("outcome") != "done" {
			t.Fatalf("the failover did not complete: %s", done.Line)
		}
		g := w.gapAfter(t, t0, c.port(to), 60*time.Second)
		last, refused := probe.lastAck("db1", t0)
		lastW := time.Time{}
		for _, a := range w.snapshot() {
			if a.port == c.port("db1") && a.at.After(t0) {
				lastW = a.at
			}
		}
		if lastW.After(last) {
			last = lastW
		}
		stopped := last.Sub(t0)
		if last.IsZero() {
			stopped = 0
		}
		if stopped > selfFence {
			t.Errorf("db1 acknowledged a write %s after the cut, later than self_fence %s", stopped, selfFence)
		}
		if refused.at.IsZero() || refused.at.Sub(t0) > selfFence+100*time.Millisecond {
			t.Errorf("the probe's first refusal on db1 came %v after the cut (%q), want within self_fence %s", refused.at.Sub(t0), refused.err, selfFence)
		}
		// The runtime reaches db1 here: the watcher promotes once it sees
		// db1 stopped and marked by its agent, lease or no lease (agentGate),
		// never before the agent began to stop it.
		fenceStarted, _ := time.Parse(time.RFC3339Nano, fence.field("started"))
		if !fo.Time.After(fenceStarted) {
			t.Errorf("the watcher promoted %s at %s, before db1's agent began to fence it (%s)", to,
				fo.Time.Format("15:04:05.000"), fenceStarted.Format("15:04:05.000"))
		}
		waited := "no wait for the lease (the runtime saw db1 fenced)"
		if waits := ww.records(m, "failover waits", map[string]string{"node": "db1"}); len(waits) > 0 {
			waited = "waited for the lease from " + waits[0].Time.Sub(t0).Round(time.Millisecond).String()
		}
		if two := probe.twoWriters(t0); two != "" {
			t.Fatalf("two nodes acknowledged commits: %s", two)
		}
		acked := ids(w.snapshot())
		if lost := missing(ctx, t, c, to, acked); len(lost) > 0 {
			t.Fatalf("%d of %d acknowledged writes missing on %s: %v", len(lost), len(acked), to, lost)
		}
		started, _ := time.Parse(time.RFC3339Nano, fence.field("started"))
		figures = append(figures, fmt.Sprintf("cut from the authority: lease ttl %s; agent began its fence %s after the cut (the stop took %s ms); %s; last write acknowledged by db1 %s after the cut, first refused at %s; lease gone %s after the cut; failover to %s logged %s after the cut, %s; 0 of %d acknowledged writes lost",
			selfFence, started.Sub(t0).Round(time.Millisecond), fence.field("took_ms"), waited, stopped.Round(time.Millisecond), refused.at.Sub(t0).Round(time.Millisecond),
			gone.Sub(t0).Round(time.Millisecond), to, fo.Time.Sub(t0).Round(time.Millisecond), g, len(acked)))

		// The cut heals: the agent takes its lease back, records its
		// fence, and the watcher rejoins db1.
		h.setCut(false)
		agents["db1"].waitLog(t, am, "recorded", map[string]string{"node": "db1"}, 30*time.Second)
		evs, err := cat.History(ctx, 50)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(evs, func(e redis.Event) bool { return e.Kind == "agent.fence" && e.Details["node"] == "db1" }) {
			t.Errorf("no agent.fence of db1 in the catalog history: %+v", evs)
		}
		if p := settled(t); p != to {
			t.Fatalf("settled on %s, want %s", p, to)
		}
	})

	t.Run("watcher cut off: the agents fence nothing", func(t *testing.T) {
		p := settled(t)
		marks := map[string]int{}
		for n, a := range agents {
			marks[n] = a.mark()
		}
		before := len(w.snapshot())
		t0 := time.Now()
		if err := ww.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * selfFence)
		if err := ww.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		for n, a := range agents {
			if f := a.records(marks[n], "fence", nil); len(f) > 0 {
				t.Errorf("the agent of %s fenced while only the watcher was away: %s", n, f[0].Line)
			}
		}
		if last, _ := probe.lastAck(p, t0); time.Since(last) > time.Second {
			t.Errorf("%s stopped acknowledging the probe's commits while the watcher was away (last at %s)", p, last.Format("15:04:05.000"))
		}
		if two := probe.twoWriters(t0); two != "" {
			t.Fatalf("two nodes acknowledged commits: %s", two)
		}
		figures = append(figures, fmt.Sprintf("watcher stopped %s: no fence, %s kept acknowledging (%d writes meanwhile)", 2*selfFence, p, len(w.snapshot())-before))
	})

	t.Run("authority down: the primary fences itself, the standbys stay", func(t *testing.T) {
		p := settled(t)
		am := agents[p].mark()
		m := ww.mark()
		marks := map[string]int{}
		for n, a := range agents {
			marks[n] = a.mark()
		}
		t0 := time.Now()
		auth.kill()
		fence := agents[p].waitLog(t, am, "fence", map[string]string{"node": p}, 2*selfFence)
		eventually(t, selfFence, func() error {
			if c.writable(ctx, p) {
				return fmt.Errorf("%s still writable", p)
			}
			return nil
		})
		last, refused := probe.lastAck(p, t0)
		stopped := last.Sub(t0)
		if last.IsZero() {
			stopped = 0
		}
		if stopped > selfFence {
			t.Errorf("%s acknowledged a commit %s after the authority went down, later than self_fence %s", p, stopped, selfFence)
		}
		for _, n := range c.names {
			if n != p {
				if f := agents[n].records(marks[n], "fence", map[string]string{"node": n}); len(f) > 0 {
					t.Errorf("the agent of standby %s fenced it: %s", n, f[0].Line)
				}
			}
		}
		time.Sleep(selfFence)
		auth.start()
		back := time.Since(t0)
		// The watcher then replaces the fenced primary.
		fo := ww.waitLog(t, m, "failover", map[string]string{"from": p}, 90*time.Second)
		ww.waitLog(t, m, "apply", map[string]string{"operation": "failover", "outcome": "done"}, 60*time.Second)
		np := settled(t)
		if two := probe.twoWriters(t0); two != "" {
			t.Fatalf("two nodes acknowledged commits: %s", two)
		}
		acked := ids(w.snapshot())
		if lost := missing(ctx, t, c, np, acked); len(lost) > 0 {
			t.Fatalf("%d of %d acknowledged writes missing on %s: %v", len(lost), len(acked), np, lost)
		}
		figures = append(figures, fmt.Sprintf("authority down: %s fenced %s after Redis died, last commit acknowledged %s after, first refused %s after; Redis back %s after; failover to %s %s after; 0 of %d acknowledged writes lost",
			p, fence.Time.Sub(t0).Round(time.Millisecond), stopped.Round(time.Millisecond), refused.at.Sub(t0).Round(time.Millisecond), back.Round(time.Millisecond), np, fo.Time.Sub(t0).Round(time.Millisecond), len(acked)))
	})
	w.finish()
}
