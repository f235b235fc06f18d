package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/internal/netcut"
	"github.com/pgha/pgha/internal/proc"
)

// The fault campaign (-chaos N, issue 14): N randomized faults (kill -9 or
// SIGSTOP of any node, any node cut off from the network, the catalog
// away, the watcher SIGKILLed idle or mid-failover, a `pgha apply`
// switchover SIGKILLed mid-way), drawn from
// a seed, against a three-node local cluster with synchronous replication
// (ANY 1, strict) kept by `pgha watch` at the watch tests' failover policy
// (primary_crash = "failover"), under a writing client and a probe of
// every node every 50 ms. After each fault is healed (a process continued
// or restarted, a listener released) the campaign waits for the cluster
// to converge — one writable primary, every other node streaming from it,
// `pgha plan -detailed-exitcode` exiting 0 — and counts the acknowledged
// writes the primary then lacks. The targets are issue 14's: no
// acknowledged write lost, never two nodes acknowledging commits at once,
// convergence within 30 s of every fault.

// The fault kinds. Issue 14's etcd authority and self-fencing agents add
// theirs here once they land (etcd member down, etcd majority lost, agent
// cut off from the authority): a kind is a name in chaosKinds and a case in
// (*chaosRun).inject.
const (
	faultKill       = "kill"       // kill -9 of a node's postmaster
	faultStop       = "stop"       // SIGSTOP of a node's processes for 0.5-8 s
	faultCatalog    = "catalog"    // the Redis catalog killed and kept away 1-15 s
	faultWatcher    = "watcher"    // pgha watch SIGKILLed, restarted 0.5-3 s later
	faultSwitchover = "switchover" // a `pgha apply` switchover SIGKILLed 50-2000 ms in
	// kill -9 of the primary's postmaster, then pgha watch SIGKILLed
	// 0.2-3 s later (mid-failover, most often) and restarted 0.5-3 s after
	faultMidFailover = "mid-failover"
	// with -agents: a node's `pgha agent` SIGKILLed, restarted 0.5-8 s later
	faultAgent = "agent"
	// a node cut off from everything for 1-15 s: every packet to and from
	// its PostgreSQL port dropped on lo (internal/netcut), so that
	// clients, standbys and the watcher get no answer, not a refusal. The
	// agents of the bench run beside the nodes, not in network namespaces
	// of their own, so a cut primary's agent still reaches the authority
	// (the e2e TestLocalAgentCutOff cuts both).
	faultCut = "cut"
	// with -authority etcd: one member SIGKILLed for 1-15 s; two of the
	// three (the majority) SIGKILLed for 1-15 s
	faultEtcdMember   = "etcd-member"
	faultEtcdMajority = "etcd-majority"
)

// chaosEtcdKinds are the faults that need -authority etcd.
var chaosEtcdKinds = []string{faultEtcdMember, faultEtcdMajority}

var chaosKinds = []string{faultKill, faultStop, faultCatalog, faultWatcher, faultSwitchover, faultMidFailover, faultCut}

// chaosAgentKinds are the faults that need -agents.
var chaosAgentKinds = []string{faultAgent}

// Targets (issue 14) and the campaign's patience.
const (
	chaosConvergeTarget = 30 * time.Second
	chaosConvergeLimit  = 60 * time.Second
	chaosProbeEvery     = 50 * time.Millisecond
	chaosWriteEvery     = 2 * time.Millisecond
)

// chaosPolicy is the watch tests' (e2e policyFailover, watchDefaults).
const (
	chaosFailover    = "check_interval = \"1s\"\nfailure_threshold = 3\nmaximum_lag = \"64kB\"\nprimary_crash = \"failover\""
	chaosWatch       = "heal = true\nrejoin = \"rewind\"\nconfig = \"apply\""
	chaosReplication = "synchronous {\nstandbys = 1\nmode = \"quorum\"\nstrict = true\n}"
)

// fault is one drawn fault: everything random about it comes from the
// seed, so that a seed replays the same sequence.
type fault struct {
	index int // 1-based
	kind  string
	node  int           // kill, stop, cut: the node (0-2); switchover: the target unless it is the primary
	hold  time.Duration // stop: the pause; catalog, cut: time away; watcher: time dead; switchover: time to the kill
	gap   time.Duration // quiet time before the fault
	hold2 time.Duration // mid-failover: how long the watcher stays dead
}

// drawFaults draws n faults of the given kinds from seed. Each fault
// takes the same number of draws whatever its kind.
func drawFaults(seed uint64, n int, kinds []string) []fault {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }
	var fs []fault
	for i := range n {
		f := fault{index: i + 1, kind: kinds[r.IntN(len(kinds))], node: r.IntN(3)}
		holds := map[string]time.Duration{
			faultKill:        0,
			faultStop:        between(500*time.Millisecond, 8*time.Second),
			faultCatalog:     between(time.Second, 15*time.Second),
			faultWatcher:     between(500*time.Millisecond, 3*time.Second),
			faultSwitchover:  between(50*time.Millisecond, 2*time.Second),
			faultMidFailover: between(200*time.Millisecond, 3*time.Second),
			faultAgent:       between(500*time.Millisecond, 8*time.Second),
			faultEtcdMember:  between(time.Second, 15*time.Second),
		}
		holds[faultEtcdMajority] = holds[faultEtcdMember]
		// The catalog's draw, not one more: a seed's sequence of the
		// other kinds stays what it was.
		holds[faultCut] = holds[faultCatalog]
		f.hold = holds[f.kind]
		f.hold2 = between(500*time.Millisecond, 3*time.Second)
		f.gap = between(0, 2*time.Second)
		fs = append(fs, f)
	}
	return fs
}

// faultResult is what one fault did.
type faultResult struct {
	fault
	label      string // e.g. "kill (primary)"
	what       string // what was done, for the per-fault line
	start      time.Time
	healed     time.Time
	end        time.Time // the next fault's start (or the campaign's end)
	converged  bool
	took       time.Duration // healed → converged
	lost       []int64       // acknowledged ids found missing after it
	twoOut     int           // probe rounds with two nodes out of recovery
	twoAck     int           // probe rounds with two nodes acknowledging a commit
	twoAckAt   []string
	primary    string // after convergence
	logFrom    int64  // the watcher log's offset at the fault's start
	logTo      int64
	decisions  map[string]int
	convergeOn string // the last reason it was not converged, when it was not
}

func (r faultResult) broke() []string {
	var why []string
	if len(r.lost) > 0 {
		why = append(why, fmt.Sprintf("%d acknowledged writes lost", len(r.lost)))
	}
	if r.twoAck > 0 {
		why = append(why, fmt.Sprintf("%d probe rounds with two nodes acknowledging commits (%s)", r.twoAck, strings.Join(first(r.twoAckAt, 3), ", ")))
	}
	if !r.converged {
		why = append(why, fmt.Sprintf("not converged %s after the heal: %s", chaosConvergeLimit, r.convergeOn))
	} else if r.took > chaosConvergeTarget {
		why = append(why, fmt.Sprintf("converged %.1f s after the heal (> %s)", r.took.Seconds(), chaosConvergeTarget))
	}
	return why
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("... %d more", len(s)-n))
	}
	return s
}

// chaosOptions are -chaos's flags.
type chaosOptions struct {
	n         int
	seed      uint64
	kinds     []string
	only      []int // fault indexes to run (of the seed's sequence); all when empty
	authority string
	runtime   string
	// agents declares agent { self_fence } and runs `pgha agent` per node
	// (issue 14's self-fencing agents); the catalog fault then cuts every
	// agent off from the authority.
	agents bool
	// limit stops drawing faults once the campaign has run this long,
	// so that a long campaign fits a time box and still reports.
	limit time.Duration
}

// runChaos runs the campaign and prints its table; it returns an error
// (the bench exits non-zero) when a target was missed, after the table.
func runChaos(bin string, o chaosOptions) error {
	if o.runtime != "local" {
		return fmt.Errorf("-chaos runs on the local runtime only (its faults signal local processes), not %q", o.runtime)
	}
	switch o.authority {
	case "", "redis", "etcd":
	default:
		return fmt.Errorf("-authority %q: redis or etcd", o.authority)
	}
	for _, k := range o.kinds {
		switch {
		case slices.Contains(chaosKinds, k):
		case slices.Contains(chaosAgentKinds, k):
			if !o.agents {
				return fmt.Errorf("-chaos-faults: %q needs -agents", k)
			}
		case slices.Contains(chaosEtcdKinds, k):
			if o.authority != "etcd" {
				return fmt.Errorf("-chaos-faults: %q needs -authority etcd", k)
			}
		default:
			return fmt.Errorf("-chaos-faults: unknown fault %q (known: %s; with -agents: %s)", k, strings.Join(chaosKinds, ", "), strings.Join(chaosAgentKinds, ", "))
		}
	}
	faults := drawFaults(o.seed, o.n, o.kinds)
	if len(o.only) > 0 {
		var keep []fault
		for _, f := range faults {
			if slices.Contains(o.only, f.index) {
				keep = append(keep, f)
			}
		}
		faults = keep
	}
	ctx, stop := signalContext()
	defer stop()
	reapPostgres(ctx)
	fmt.Printf("chaos: seed %d, %d faults of %s; three local nodes, synchronous ANY 1 (strict), primary_crash = \"failover\", pgha watch%s%s...\n",
		o.seed, len(faults), strings.Join(o.kinds, ","), agentsNote(o.agents), authorityNote(o.authority))
	began := time.Now()
	po := pghaOptions{name: "benchchaos", failover: chaosFailover, watch: chaosWatch,
		replication: chaosReplication, agents: o.agents, agent: chaosAgent}
	var etcd *chaosEtcd
	if o.authority == "etcd" {
		edir, err := os.MkdirTemp("", "pgha-benchchaos-etcd")
		if err != nil {
			return err
		}
		defer os.RemoveAll(edir)
		if etcd, err = startChaosEtcd(edir); err != nil {
			return err
		}
		defer etcd.stop()
		po.authority = "authority \"etcd\" {\nendpoints = " + etcd.endpoints() + "\n}"
	}
	var cut *netcut.Cutter
	if slices.Contains(o.kinds, faultCut) {
		var err error
		if cut, err = netcut.New("pgha-bench"); err != nil {
			return fmt.Errorf("-chaos-faults %s: %w", faultCut, err)
		}
		if tags, err := cut.SweepDead(); err != nil {
			return fmt.Errorf("-chaos-faults %s: remove the cuts of dead campaigns: %w", faultCut, err)
		} else if len(tags) > 0 {
			fmt.Printf("chaos: removed the iptables rules left by %s\n", strings.Join(tags, ", "))
		}
		defer func() {
			if n, err := cut.Sweep(); err != nil || n > 0 {
				fmt.Printf("chaos: %d iptables rules of %s left at the end, removed (%v)\n", n, cut.Tag, err)
			}
		}()
	}
	c, err := startPghaWith(ctx, bin, "local", "", po)
	if err != nil {
		return err
	}
	defer c.close()
	ch := &chaosRun{c: c, ctx: ctx, etcd: etcd, cut: cut}
	if o.agents {
		for i := range c.pg {
			if err := ch.startAgent(i); err != nil {
				return err
			}
		}
		defer ch.stopAgents()
	}
	if err := ch.setup(); err != nil {
		return err
	}
	defer ch.probe.stop()
	if _, err := ch.converge(time.Now()); err != nil {
		return fmt.Errorf("the new cluster did not converge: %w", err)
	}
	ch.w = startPacedWriter(ctx, c.connString(), chaosWriteEvery)
	if err := ch.w.waitAcks(ctx, 100, 20*time.Second); err != nil {
		ch.w.stop()
		return fmt.Errorf("the writer did not get going: %w", err)
	}
	fmt.Printf("chaos: cluster up in %s\n", time.Since(began).Round(time.Second))
	var results []*faultResult
	aborted := ""
	for _, f := range faults {
		if ctx.Err() != nil {
			break
		}
		if o.limit > 0 && time.Since(began) > o.limit {
			ch.limited = fmt.Sprintf("-chaos-for %s reached: %d of %d faults run", o.limit, len(results), len(faults))
			break
		}
		r := ch.run(f)
		results = append(results, r)
		if !r.converged {
			// Not converged within the limit: give the cluster what an
			// operator would (a pgha apply) before the next fault, and
			// stop when even that does not bring it back.
			if err := ch.rescue(); err != nil {
				aborted = fmt.Sprintf("after fault #%d the cluster did not come back (%v): campaign stopped", f.index, err)
				break
			}
		}
	}
	acked := ch.w.stop()
	end := time.Now()
	for i, r := range results {
		if i+1 < len(results) {
			r.end = results[i+1].start
		} else {
			r.end = end
		}
	}
	// The final count: every acknowledged write on the final primary.
	finalLost := -1
	finalPrimary := ""
	if _, err := ch.converge(time.Now()); err == nil {
		if p, err := findPrimary(ctx, c); err == nil {
			finalPrimary = c.node(p)
			if miss, err := ch.missing(p, acked); err == nil {
				finalLost = len(miss)
			}
		}
	}
	ch.probe.stop()
	ch.attribute(results)
	failed := printChaos(ch, o, results, len(acked), finalLost, finalPrimary, time.Since(began), aborted)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed {
		return errors.New("chaos: a target was missed (see the table)")
	}
	return nil
}

// chaosRun is the campaign's state: the cluster, the writer, the probe
// and the acknowledged writes already found missing.
type chaosRun struct {
	c        *pghaCluster
	ctx      context.Context
	w        *writer
	probe    *probe
	reported map[int64]bool
	rescues  int
	selfExit int // times the watcher was found exited without being killed
	// healedAt is when inject ended the fault, when that is before it
	// returns (the catalog's port released, then waited on); zero: its return.
	healedAt   time.Time
	etcd       *chaosEtcd  // with -authority etcd
	agents     []*exec.Cmd // by node, with -agents
	agentsDone []chan struct{}
	agentExits int            // agents found exited without being killed
	limited    string         // why fewer faults ran than drawn (-chaos-for), not a failure
	cut        *netcut.Cutter // with the cut fault
}

// chaosAgent is the agent block's body with -agents: the default bound.
const chaosAgent = "self_fence = \"5s\""

func authorityNote(a string) string {
	if a == "etcd" {
		return ", authority in a three-member etcd"
	}
	return ""
}

func agentsNote(on bool) string {
	if on {
		return ", pgha agent on every node (self_fence 5s)"
	}
	return ""
}

// startAgent starts `pgha agent -node dbN` for node i, logging to
// agent-dbN.log beside the watcher's log (appended across restarts).
func (ch *chaosRun) startAgent(i int) error {
	c := ch.c
	for len(ch.agents) <= i {
		ch.agents = append(ch.agents, nil)
		ch.agentsDone = append(ch.agentsDone, nil)
	}
	name := fmt.Sprintf("db%d", i+1)
	logf, err := os.OpenFile(filepath.Join(c.dir, "agent-"+name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, "agent", "-f", c.file, "-node", name)
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("pgha agent -node %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	ch.agents[i], ch.agentsDone[i] = cmd, done
	return nil
}

// stopAgent ends node i's agent with sig and waits for it.
func (ch *chaosRun) stopAgent(i int, sig syscall.Signal) {
	if i >= len(ch.agents) || ch.agents[i] == nil {
		return
	}
	_ = ch.agents[i].Process.Signal(sig)
	select {
	case <-ch.agentsDone[i]:
	case <-time.After(15 * time.Second):
		_ = ch.agents[i].Process.Kill()
		<-ch.agentsDone[i]
	}
}

func (ch *chaosRun) stopAgents() {
	for i := range ch.agents {
		ch.stopAgent(i, syscall.SIGTERM)
	}
}

// agentsAlive restarts any agent that exited by itself, counting it.
func (ch *chaosRun) agentsAlive() {
	for i, done := range ch.agentsDone {
		select {
		case <-done:
			ch.agentExits++
			fmt.Printf("chaos: pgha agent -node db%d had exited by itself (log %s); restarted\n", i+1, filepath.Join(ch.c.dir, fmt.Sprintf("agent-db%d.log", i+1)))
			_ = ch.startAgent(i)
		default:
		}
	}
}

func (ch *chaosRun) setup() error {
	ch.reported = map[int64]bool{}
	p, err := findPrimary(ch.ctx, ch.c)
	if err != nil {
		return err
	}
	conn, err := connectOne(ch.ctx, ch.c, p)
	if err != nil {
		return err
	}
	defer conn.Close(ch.ctx)
	if _, err := conn.Exec(ch.ctx, "CREATE TABLE IF NOT EXISTS chaos_probe (node text PRIMARY KEY, n bigint NOT NULL)"); err != nil {
		return err
	}
	ch.probe = startProbe(ch.ctx, ch.c.connString(), ch.c.pg)
	return nil
}

func (ch *chaosRun) dataDir(node int) string {
	return filepath.Join(ch.c.dir, "data", fmt.Sprintf("db%d", node+1))
}

// run injects one fault, heals it, waits for convergence and counts the
// writes lost so far.
func (ch *chaosRun) run(f fault) *faultResult {
	c := ch.c
	r := &faultResult{fault: f}
	sleepCtx(ch.ctx, f.gap)
	if c.watching() != nil {
		// The watcher exited by itself since the last fault: a finding, and
		// the campaign needs one.
		ch.selfExit++
		fmt.Printf("chaos: pgha watch had exited by itself before fault #%d (log %s); restarted\n", f.index, c.logPath)
		_ = c.startWatch()
	}
	ch.agentsAlive()
	primary := -1
	if p, err := findPrimary(ch.ctx, c); err == nil {
		primary = slices.Index(c.pg, p)
	}
	r.logFrom = c.logSize()
	r.start = time.Now()
	ch.healedAt = time.Time{}
	r.label, r.what = ch.inject(f, primary)
	r.healed = ch.healedAt
	if r.healed.IsZero() {
		r.healed = time.Now()
	}
	took, err := ch.converge(r.healed)
	r.logTo = c.logSize()
	r.decisions = c.decisions(r.logFrom)
	if err != nil {
		r.convergeOn = err.Error()
	} else {
		r.converged, r.took = true, took
		// Converged means one writable primary a moment ago; a connection
		// refused now (a loaded machine) is asked again, not left as a
		// blank primary and an unchecked fault (the campaign's final check
		// covers every write all the same).
		p, err := findPrimary(ch.ctx, c)
		for i := 0; err != nil && i < 5 && ch.ctx.Err() == nil; i++ {
			sleepCtx(ch.ctx, time.Second)
			p, err = findPrimary(ch.ctx, c)
		}
		if err != nil {
			r.primary = "unknown (" + err.Error() + "; losses checked at the end)"
		} else {
			r.primary = c.node(p)
			ch.w.mu.Lock()
			ids := make([]int64, len(ch.w.acks))
			for i, a := range ch.w.acks {
				ids[i] = a.id
			}
			ch.w.mu.Unlock()
			if miss, err := ch.missing(p, ids); err == nil {
				for _, id := range miss {
					if !ch.reported[id] {
						ch.reported[id] = true
						r.lost = append(r.lost, id)
					}
				}
			}
		}
	}
	conv := fmt.Sprintf("converged %.1f s after the heal", r.took.Seconds())
	if !r.converged {
		conv = "NOT CONVERGED: " + firstLine(r.convergeOn)
	}
	fmt.Printf("chaos #%d %s: %s; %s, primary %s, %d lost; watcher: %s\n", f.index, r.label, r.what, conv, r.primary, len(r.lost), decisionSummary(r.decisions))
	return r
}

// inject does the fault and heals it; it returns the row's label and a
// sentence of what was done.
func (ch *chaosRun) inject(f fault, primary int) (label, what string) {
	c := ch.c
	role := func(n int) string {
		if n == primary {
			return "primary"
		}
		return "standby"
	}
	name := fmt.Sprintf("db%d", f.node+1)
	switch f.kind {
	case faultKill:
		label = "kill -9 (" + role(f.node) + ")"
		pm := postmasterPID(ch.dataDir(f.node))
		if pm == 0 {
			return label, name + " had no postmaster running"
		}
		_ = syscall.Kill(pm, syscall.SIGKILL)
		return label, fmt.Sprintf("kill -9 of %s's postmaster (%s)", name, role(f.node))
	case faultStop:
		label = "SIGSTOP (" + role(f.node) + ")"
		pm := postmasterPID(ch.dataDir(f.node))
		if pm == 0 {
			return label, name + " had no postmaster running"
		}
		pids := proc.Tree(pm)
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGSTOP)
		}
		sleepCtx(ch.ctx, f.hold)
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGCONT)
		}
		return label, fmt.Sprintf("SIGSTOP of %s (%s, %d processes) for %.1f s", name, role(f.node), len(pids), f.hold.Seconds())
	case faultCatalog:
		return "catalog down", ch.catalogDown(f.hold)
	case faultWatcher:
		c.stopWatch(syscall.SIGKILL)
		sleepCtx(ch.ctx, f.hold)
		if err := c.startWatch(); err != nil {
			return "watcher killed", "pgha watch SIGKILLed; restarting it failed: " + err.Error()
		}
		return "watcher killed", fmt.Sprintf("pgha watch SIGKILLed, restarted %.1f s later", f.hold.Seconds())
	case faultMidFailover:
		label = "kill -9 primary, watcher killed"
		if primary < 0 {
			return label, "no primary to kill"
		}
		pm := postmasterPID(ch.dataDir(primary))
		if pm == 0 {
			return label, fmt.Sprintf("db%d had no postmaster running", primary+1)
		}
		_ = syscall.Kill(pm, syscall.SIGKILL)
		sleepCtx(ch.ctx, f.hold)
		c.stopWatch(syscall.SIGKILL)
		sleepCtx(ch.ctx, f.hold2)
		werr := c.startWatch()
		what = fmt.Sprintf("kill -9 of db%d's postmaster (primary), pgha watch SIGKILLed %d ms later, restarted %.1f s after", primary+1, f.hold.Milliseconds(), f.hold2.Seconds())
		if werr != nil {
			what += "; restarting it failed: " + werr.Error()
		}
		return label, what
	case faultAgent:
		label = "agent killed (" + role(f.node) + ")"
		ch.stopAgent(f.node, syscall.SIGKILL)
		sleepCtx(ch.ctx, f.hold)
		if err := ch.startAgent(f.node); err != nil {
			return label, "restarting the agent failed: " + err.Error()
		}
		return label, fmt.Sprintf("pgha agent of %s (%s) SIGKILLed, restarted %.1f s later", name, role(f.node), f.hold.Seconds())
	case faultCut:
		label = "cut off (" + role(f.node) + ")"
		port := c.pg[f.node]
		undo, err := ch.cut.Cut(port)
		if err != nil {
			return label, err.Error()
		}
		sleepCtx(ch.ctx, f.hold)
		what = fmt.Sprintf("%s (%s) cut off: every packet to and from port %d dropped on lo for %.1f s", name, role(f.node), port, f.hold.Seconds())
		if err := undo(); err != nil {
			what += "; " + err.Error()
		}
		return label, what
	case faultEtcdMember:
		return "etcd member down", ch.etcd.memberDown(f.node, f.hold, func(d time.Duration) { sleepCtx(ch.ctx, d) })
	case faultEtcdMajority:
		return "etcd majority lost", ch.etcd.majorityDown(f.node, f.hold, func(d time.Duration) { sleepCtx(ch.ctx, d) })
	case faultSwitchover:
		target := f.node
		if target == primary || primary < 0 {
			target = (f.node + 1) % 3
		}
		return "switchover killed", ch.killedSwitchover(fmt.Sprintf("db%d", target+1), f.hold)
	}
	return f.kind, "unknown fault"
}

// catalogDown kills the managed redis-server with SIGKILL and holds its
// port with a listener that drops every connection for hold, so that
// nothing restarts it meanwhile; then it lets the watcher's healing start
// it again, or starts it by hand (as the postgres user, with the
// redis.conf pgha wrote) when the watcher has not within 8 s.
func (ch *chaosRun) catalogDown(hold time.Duration) string {
	c := ch.c
	dir := filepath.Join(c.dir, "data", "redis")
	b, err := os.ReadFile(filepath.Join(dir, "redis.pid"))
	if err != nil {
		return "no redis.pid: " + err.Error()
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Sprintf("kill -9 redis-server %d: %v", pid, err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", c.redis)
	var ln net.Listener
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
	}
	if ln != nil {
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				conn.Close()
			}
		}()
	}
	sleepCtx(ch.ctx, hold)
	if ln != nil {
		ln.Close()
	}
	ch.healedAt = time.Now()
	up := func() bool {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}
	how := "the watcher started it again"
	deadline := time.Now().Add(8 * time.Second)
	for !up() && time.Now().Before(deadline) {
		sleepCtx(ch.ctx, 200*time.Millisecond)
	}
	if !up() {
		how = "started by hand (the watcher had not within 8 s)"
		cmd := exec.Command("redis-server", filepath.Join(dir, "redis.conf"))
		cmd.Dir = dir
		if cred, err := postgresUser(); err == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setsid: true}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			how = fmt.Sprintf("starting it by hand failed: %v %s", err, out)
		}
	}
	held := "its port held"
	if ln == nil {
		held = "its port could not be held"
	}
	return fmt.Sprintf("redis-server killed, %s for %.1f s; %s", held, hold.Seconds(), how)
}

// killedSwitchover is the e2e test's recipe ("pgha apply SIGKILLed
// mid-switchover"): the watcher is stopped so that the apply, not it,
// starts the switchover to target; once the apply has printed its plan a
// new watcher starts (it finds the lock held), and the apply is SIGKILLed
// after `after`.
func (ch *chaosRun) killedSwitchover(target string, after time.Duration) string {
	c := ch.c
	c.stopWatch(syscall.SIGTERM)
	if err := declarePrimary(c.file, target); err != nil {
		_ = c.startWatch()
		return "declare: " + err.Error()
	}
	cmd := exec.Command(c.bin, "apply", "-f", c.file, "-auto-approve")
	cmd.Env = c.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		_ = c.startWatch()
		return err.Error()
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		_ = c.startWatch()
		return err.Error()
	}
	planned := make(chan struct{})
	var printed strings.Builder
	var pmu sync.Mutex
	go func() {
		sc := bufio.NewScanner(out)
		fired := false
		for sc.Scan() {
			pmu.Lock()
			printed.WriteString(sc.Text() + "\n")
			pmu.Unlock()
			if !fired && strings.HasPrefix(sc.Text(), "Plan: ") {
				fired = true
				close(planned)
			}
		}
		if !fired {
			close(planned)
		}
	}()
	select {
	case <-planned:
	case <-time.After(30 * time.Second):
	}
	werr := c.startWatch()
	sleepCtx(ch.ctx, after)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	err = cmd.Wait()
	what := fmt.Sprintf("pgha apply switching over to %s SIGKILLed %d ms after its plan", target, after.Milliseconds())
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		pmu.Lock()
		what = fmt.Sprintf("pgha apply switching over to %s ended before the kill at %d ms (%v)", target, after.Milliseconds(), err)
		pmu.Unlock()
	}
	if werr != nil {
		what += "; restarting the watcher failed: " + werr.Error()
	}
	return what
}

var primaryLine = regexp.MustCompile(`(?m)^  primary = "[^"]*"`)

// declarePrimary rewrites the file's primary.
func declarePrimary(file, node string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if !primaryLine.Match(b) {
		return fmt.Errorf("no primary line in %s", file)
	}
	nb := primaryLine.ReplaceAll(b, []byte(`  primary = "`+node+`"`))
	if string(nb) == string(b) {
		return nil
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, nb, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

func declaredPrimary(file string) string {
	b, _ := os.ReadFile(file)
	m := primaryLine.Find(b)
	if m == nil {
		return ""
	}
	s := string(m)
	return s[strings.IndexByte(s, '"')+1 : len(s)-1]
}

// convergedNow says why the cluster is not converged (nil when it is): one
// node out of recovery, every other one's WAL receiver streaming from it,
// and `pgha plan -detailed-exitcode` exiting 0. The file then declares the
// primary the cluster has: after a failover the operator's file follows
// the cluster (failback is manual), as in the watch tests.
func (ch *chaosRun) convergedNow() error {
	c := ch.c
	type nodeState struct {
		err         error
		recovery    bool
		status      string
		senderPort  int
		port        int
		description string
	}
	states := make([]nodeState, len(c.pg))
	var wg sync.WaitGroup
	for i, port := range c.pg {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &states[i]
			st.port = port
			qctx, cancel := context.WithTimeout(ch.ctx, 2*time.Second)
			defer cancel()
			conn, err := connectWithin(qctx, c.connString(), port, 2*time.Second)
			if err != nil {
				st.err = err
				return
			}
			defer conn.Close(context.Background())
			st.err = conn.QueryRow(qctx, `SELECT pg_is_in_recovery(),
				coalesce((SELECT status FROM pg_stat_wal_receiver), ''),
				coalesce((SELECT sender_port FROM pg_stat_wal_receiver), 0)`).Scan(&st.recovery, &st.status, &st.senderPort)
		}()
	}
	wg.Wait()
	primary := -1
	for i, st := range states { // two primaries first: the worse news
		if st.err == nil && !st.recovery {
			if primary >= 0 {
				return fmt.Errorf("db%d and db%d are both out of recovery", primary+1, i+1)
			}
			primary = i
		}
	}
	primary = -1
	for i, st := range states {
		if st.err != nil {
			return fmt.Errorf("db%d: %v", i+1, firstLine(st.err.Error()))
		}
		if !st.recovery {
			if primary >= 0 {
				return fmt.Errorf("db%d and db%d are both out of recovery", primary+1, i+1)
			}
			primary = i
		}
	}
	if primary < 0 {
		return errors.New("no node is out of recovery")
	}
	for i, st := range states {
		if i != primary && (st.status != "streaming" || st.senderPort != c.pg[primary]) {
			return fmt.Errorf("db%d: WAL receiver %q from port %d, want streaming from db%d", i+1, st.status, st.senderPort, primary+1)
		}
	}
	if p := fmt.Sprintf("db%d", primary+1); declaredPrimary(c.file) != p {
		if err := declarePrimary(c.file, p); err != nil {
			return err
		}
	}
	if out, err := c.pgha("plan", "-detailed-exitcode"); err != nil {
		return fmt.Errorf("pgha plan -detailed-exitcode: %v: %s", err, planSummary(string(out)))
	}
	return nil
}

// planSummary is the lines of a plan output that say what it would do.
func planSummary(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") || strings.HasPrefix(t, "Plan:") || strings.HasPrefix(t, "Error") || strings.HasPrefix(t, "error") {
			keep = append(keep, t)
		}
	}
	if len(keep) == 0 {
		return firstLine(strings.TrimSpace(out))
	}
	return strings.Join(first(keep, 6), " | ")
}

// converge waits for the cluster to be converged and to stay so a second
// later, and returns the time from `from` to the first check of that
// converged run; it gives up chaosConvergeLimit after from.
func (ch *chaosRun) converge(from time.Time) (time.Duration, error) {
	var last error
	var since time.Time // the start of the current converged run
	for time.Since(from) < chaosConvergeLimit {
		if err := ch.ctx.Err(); err != nil {
			return 0, err
		}
		at := time.Now()
		if last = ch.convergedNow(); last == nil {
			if since.IsZero() {
				since = at
			}
			if time.Since(since) >= time.Second {
				return since.Sub(from), nil
			}
		} else {
			since = time.Time{}
		}
		sleepCtx(ch.ctx, 200*time.Millisecond)
	}
	if last == nil && !since.IsZero() {
		return since.Sub(from), nil
	}
	return 0, fmt.Errorf("not converged within %s: %w", chaosConvergeLimit, last)
}

// rescue is what an operator does with a cluster the watcher did not
// bring back: a pgha apply, then another minute.
func (ch *chaosRun) rescue() error {
	ch.rescues++
	fmt.Println("chaos: not converged; pgha apply, as an operator would")
	if ch.c.watching() != nil {
		_ = ch.c.startWatch()
	}
	if out, err := ch.c.pgha("apply", "-auto-approve"); err != nil {
		fmt.Printf("chaos: pgha apply: %v\n%s\n", err, tail(string(out), 10))
	}
	_, err := ch.converge(time.Now())
	return err
}

// missing lists the ids of acked the node on port lacks.
func (ch *chaosRun) missing(port int, acked []int64) ([]int64, error) {
	var last error
	for range 20 { // a node just promoted or restarted may refuse a moment
		conn, err := connectOne(ch.ctx, ch.c, port)
		if err == nil {
			var miss []int64
			rows, err := conn.Query(ch.ctx, `SELECT a.id FROM unnest($1::bigint[]) AS a(id)
				WHERE NOT EXISTS (SELECT 1 FROM bench_writes b WHERE b.id = a.id) ORDER BY 1`, acked)
			if err == nil {
				miss, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			}
			conn.Close(context.Background())
			if err == nil {
				return miss, nil
			}
		}
		last = err
		sleepCtx(ch.ctx, 250*time.Millisecond)
	}
	return nil, last
}

// attribute gives each fault the probe rounds of its window (from its
// start to the next fault's).
func (ch *chaosRun) attribute(results []*faultResult) {
	rounds := ch.probe.snapshot()
	for _, r := range results {
		for _, pr := range rounds {
			if pr.at.Before(r.start) || !pr.at.Before(r.end) {
				continue
			}
			if pr.outCount() > 1 {
				r.twoOut++
			}
			if pr.ackCount() > 1 {
				r.twoAck++
				r.twoAckAt = append(r.twoAckAt, pr.at.Format("15:04:05.000")+" "+strings.Join(pr.acked(), "+"))
			}
		}
	}
}

// probe asks every node every 50 ms whether it is out of recovery and,
// when it is, whether a tiny commit on it succeeds (within a second).
// Each node has its own goroutine and connection; a round a node is still
// busy with the last one (stopped, hanging on a commit) finds it with no
// answer, so that one frozen node does not slow the others' rounds.
type probe struct {
	mu     sync.Mutex
	rounds []probeRound
	cancel context.CancelFunc
	done   sync.WaitGroup
	once   sync.Once
}

type probeRound struct {
	at       time.Time
	answered [3]bool
	out      [3]bool // not in recovery
	ack      [3]bool // a commit acknowledged
}

func (r probeRound) outCount() int { return countTrue(r.out[:]) }
func (r probeRound) ackCount() int { return countTrue(r.ack[:]) }
func (r probeRound) acked() []string {
	var s []string
	for i, a := range r.ack {
		if a {
			s = append(s, fmt.Sprintf("db%d", i+1))
		}
	}
	return s
}

func countTrue(b []bool) int {
	n := 0
	for _, x := range b {
		if x {
			n++
		}
	}
	return n
}

func startProbe(parent context.Context, connString string, ports []int) *probe {
	ctx, cancel := context.WithCancel(parent)
	p := &probe{cancel: cancel}
	chans := make([]chan int, len(ports))
	for i, port := range ports {
		chans[i] = make(chan int)
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(context.Background())
				}
			}()
			name := fmt.Sprintf("db%d", i+1)
			for {
				var round int
				select {
				case <-ctx.Done():
					return
				case round = <-chans[i]:
				}
				qctx, qcancel := context.WithTimeout(ctx, time.Second)
				out, ack, err := func() (bool, bool, error) {
					if conn == nil {
						c, err := connectWithin(qctx, connString, port, 500*time.Millisecond)
						if err != nil {
							return false, false, err
						}
						conn = c
					}
					var rec bool
					if err := conn.QueryRow(qctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
						return false, false, err
					}
					if rec {
						return false, false, nil
					}
					_, err := conn.Exec(qctx, "INSERT INTO chaos_probe (node, n) VALUES ($1, 1) ON CONFLICT (node) DO UPDATE SET n = chaos_probe.n + 1", name)
					return true, err == nil, err
				}()
				qcancel()
				if err != nil && conn != nil {
					// A refused or timed-out query or commit: the next
					// round connects afresh.
					conn.Close(context.Background())
					conn = nil
				}
				p.mu.Lock()
				r := &p.rounds[round]
				r.answered[i] = err == nil
				r.out[i] = out
				r.ack[i] = ack
				p.mu.Unlock()
			}
		}()
	}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		t := time.NewTicker(chaosProbeEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			p.mu.Lock()
			p.rounds = append(p.rounds, probeRound{at: time.Now()})
			round := len(p.rounds) - 1
			p.mu.Unlock()
			for _, ch := range chans {
				select {
				case ch <- round:
				default: // still busy with an earlier round
				}
			}
		}
	}()
	return p
}

func (p *probe) stop() {
	p.once.Do(func() {
		p.cancel()
		p.done.Wait()
	})
}

func (p *probe) snapshot() []probeRound {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.rounds)
}

// decisionSummary is the watcher's notable records of a fault's window.
func decisionSummary(d map[string]int) string {
	var parts []string
	for _, k := range []string{"primary suspect", "primary lost", "failover", "restart in place", "switchover", "rejoin", "heal", "held by policy", "failover waits", "catalog unreachable", "authority unreachable", "lock busy", "leader acquired", "leader lost"} {
		if d[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s x%d", k, d[k]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// logLines returns the watcher's records between two offsets of its log
// that say what it decided or what went wrong, at most n.
func (c *pghaCluster) logLines(from, to int64, n int) []string {
	f, err := os.Open(c.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return nil
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var out []string
	pos := from
	for sc.Scan() && (to <= 0 || pos < to) {
		pos += int64(len(sc.Bytes())) + 1
		var rec struct {
			Msg   string `json:"msg"`
			Level string `json:"level"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		switch {
		case rec.Level == "WARN" || rec.Level == "ERROR":
		case slices.Contains([]string{"primary lost", "failover", "restart in place", "switchover", "rejoin", "heal", "held by policy", "apply", "leader acquired", "leader lost"}, rec.Msg):
		default:
			continue
		}
		out = append(out, sc.Text())
	}
	if len(out) > n {
		out = append(out[:n:n], fmt.Sprintf("... %d more", len(out)-n))
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func pctDur(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

// printChaos prints the table and the faults that broke a target, and
// reports whether any did.
func printChaos(ch *chaosRun, o chaosOptions, results []*faultResult, acked, finalLost int, finalPrimary string, took time.Duration, aborted string) bool {
	type agg struct {
		count, lost, twoOut, twoAck, unconverged, over int
		conv                                           []time.Duration
	}
	byLabel := map[string]*agg{}
	var labels []string
	all := &agg{}
	for _, r := range results {
		a := byLabel[r.label]
		if a == nil {
			a = &agg{}
			byLabel[r.label] = a
			labels = append(labels, r.label)
		}
		for _, x := range []*agg{a, all} {
			x.count++
			x.lost += len(r.lost)
			x.twoOut += r.twoOut
			x.twoAck += r.twoAck
			if r.converged {
				x.conv = append(x.conv, r.took)
				if r.took > chaosConvergeTarget {
					x.over++
				}
			} else {
				x.unconverged++
			}
		}
	}
	sort.Strings(labels)
	cores := "?"
	if b, err := exec.Command("nproc").Output(); err == nil {
		cores = strings.TrimSpace(string(b))
	}
	fmt.Printf("\nfault campaign: seed %d, %d faults (%s), %s on %s cores, load %s at the end\n", o.seed, len(results), strings.Join(o.kinds, ","), took.Round(time.Second), cores, loadAverage())
	fmt.Printf("three local nodes, synchronous ANY 1 strict, primary_crash = \"failover\", Redis catalog (managed)%s, pgha watch%s; writer every %s, probe every %s\n\n", authorityNote(o.authority), agentsNote(o.agents), chaosWriteEvery, chaosProbeEvery)
	fmt.Printf("%-32s %6s %6s %9s %9s %9s %9s %9s %8s %12s\n", "fault", "count", "lost", "2 out", "2 acking", "conv med", "conv p95", "conv max", ">30 s", "unconverged")
	line := func(name string, a *agg) {
		med, p95, mx := "-", "-", "-"
		if len(a.conv) > 0 {
			med, p95, mx = secs(pctDur(a.conv, 50)), secs(pctDur(a.conv, 95)), secs(pctDur(a.conv, 100))
		}
		fmt.Printf("%-32s %6d %6d %9d %9d %9s %9s %9s %8d %12d\n", name, a.count, a.lost, a.twoOut, a.twoAck, med, p95, mx, a.over, a.unconverged)
	}
	for _, l := range labels {
		line(l, byLabel[l])
	}
	line("all", all)
	fmt.Printf("\n2 out: probe rounds (every %s) with two nodes out of recovery; 2 acking: rounds in which two nodes acknowledged a commit (the failure the targets count)\n", chaosProbeEvery)
	fmt.Printf("conv: from the fault's heal (process continued or restarted, listener released, port uncut, apply killed) to one writable primary, the others streaming from it and pgha plan -detailed-exitcode 0, held 1 s\n")
	failed := false
	final := fmt.Sprintf("%d acknowledged writes, %d missing on the final primary %s", acked, finalLost, finalPrimary)
	if finalLost < 0 {
		final = fmt.Sprintf("%d acknowledged writes; the final primary could not be checked", acked)
		failed = true
	} else if finalLost > 0 {
		failed = true
	}
	fmt.Printf("writer: %s\n", final)
	rounds := ch.probe.snapshot()
	var answered [3]int
	for _, r := range rounds {
		for i, a := range r.answered {
			if a {
				answered[i]++
			}
		}
	}
	fmt.Printf("probe: %d rounds; answered by db1 %d, db2 %d, db3 %d\n", len(rounds), answered[0], answered[1], answered[2])
	if ch.agentExits > 0 {
		fmt.Printf("a pgha agent exited by itself %d times (restarted by the campaign)\n", ch.agentExits)
	}
	if ch.selfExit > 0 {
		fmt.Printf("pgha watch exited by itself %d times (restarted by the campaign)\n", ch.selfExit)
	}
	if ch.rescues > 0 {
		fmt.Printf("a pgha apply was needed %d times after an unconverged fault\n", ch.rescues)
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		failed = true
		return "MISSED"
	}
	fmt.Printf("\ntargets: 0 acknowledged writes lost: %s; 0 rounds with two nodes acknowledging: %s; every fault converged within %s: %s\n",
		verdict(all.lost == 0 && finalLost == 0), verdict(all.twoAck == 0), chaosConvergeTarget, verdict(all.unconverged == 0 && all.over == 0))
	var broke []*faultResult
	for _, r := range results {
		if len(r.broke()) > 0 {
			broke = append(broke, r)
		}
	}
	if len(broke) > 0 {
		fmt.Printf("\nfaults that broke a target (replay one: -chaos %d -seed %d -chaos-faults %s -chaos-only INDEX):\n", o.n, o.seed, strings.Join(o.kinds, ","))
		for _, r := range broke {
			fmt.Printf("#%d %s: %s — %s\n", r.index, r.label, r.what, strings.Join(r.broke(), "; "))
			if len(r.lost) > 0 {
				fmt.Printf("    lost ids: %v\n", first64(r.lost, 20))
			}
			for _, l := range ch.c.logLines(r.logFrom, r.logTo, 25) {
				fmt.Printf("    %s\n", l)
			}
		}
	}
	if ch.limited != "" {
		fmt.Println("\n" + ch.limited)
	}
	if aborted != "" {
		fmt.Println("\n" + aborted)
		failed = true
	}
	return failed
}

func first64(s []int64, n int) []int64 {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// parseChaosOnly reads -chaos-only: fault indexes, comma-separated.
func parseChaosOnly(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-chaos-only %q: fault indexes (1, 2, ...) separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}
