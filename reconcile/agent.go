package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgdata"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

// This file is `pgha agent -node NAME`: the process on a node's host that
// holds the node's member lease in the authority and stops the node's
// primary itself when it may no longer be the primary (issue 14's
// self-fencing; Patroni's per-node daemon reduced to that). It never
// starts the server: bringing a fenced node back is a rejoin in the
// watcher's plan, where a person can see it.

// FenceInput is what an agent knows of its node at one check.
type FenceInput struct {
	Node string
	// Running: the postmaster runs. Primary: it is out of recovery
	// (pg_control's state "in production"), or, when pg_control could not
	// be read, it runs without standby.signal.
	Running, Primary bool
	// StartingStandby: the postmaster runs but is still starting
	// (postmaster.pid's status line says so or is not written yet:
	// pgdata.Starting) and standby.signal is there, so it
	// accepts no connection now and comes up in recovery. pg_control
	// still says "in production" meanwhile when it crashed as a primary:
	// the watcher's restart of a former primary as a standby looks like
	// a primary for the seconds its fsync of the data directory takes.
	StartingStandby bool
	// LeaseLost: the agent holds no member lease (lost, or never taken:
	// the authority did not answer), so it cannot show that this host
	// reaches the authority.
	LeaseLost bool
	// Record is the cluster record the authority holds; nil when it was
	// not read (no lease, no answer) or there is none.
	Record *state.ClusterRecord
	// OwnGeneration is the newest generation at which the agent saw the
	// record name Node the primary, or that the record had when the agent
	// first saw Node a primary (a standby just promoted, whose record
	// still names the old primary until the failover records it).
	OwnGeneration int64
}

// FenceDecision says whether to stop the node's server now, and why.
type FenceDecision struct {
	Fence   bool
	Reasons []string
}

// DecideFence is the agent's rule, pure: a running primary is stopped
// when its agent holds no member lease (a watcher may promote another
// node once the store lets the lease go) or when the authority's record
// names another primary at a generation newer than the last one that
// named this node (the cluster failed over without it). A standby takes
// no writes and a stopped server none either: neither is touched, and
// nor is a server starting as a standby.
func DecideFence(in FenceInput) FenceDecision {
	switch {
	case !in.Running:
		return FenceDecision{Reasons: []string{in.Node + " is not running"}}
	case in.StartingStandby:
		return FenceDecision{Reasons: []string{in.Node + " is starting as a standby (standby.signal; postmaster.pid says starting): it accepts no connection and comes up in recovery"}}
	case !in.Primary:
		return FenceDecision{Reasons: []string{in.Node + " is a standby: it takes no writes"}}
	}
	var d FenceDecision
	if in.LeaseLost {
		d.Reasons = append(d.Reasons, "the member lease of "+in.Node+" could not be renewed in time: the authority is unreachable from this host, and a watcher may promote another node once the lease expires")
	}
	if r := in.Record; r != nil && r.Primary != "" && r.Primary != in.Node {
		switch {
		case r.Generation > in.OwnGeneration:
			d.Reasons = append(d.Reasons, fmt.Sprintf("the authority's record names %s the primary at generation %d (newer than %d, the last naming %s or seen when it became primary)",
				r.Primary, r.Generation, in.OwnGeneration, in.Node))
		case slices.Contains(r.Rejoin, in.Node):
			d.Reasons = append(d.Reasons, fmt.Sprintf("the authority's record names %s the primary at generation %d and lists %s as a former primary that must rejoin",
				r.Primary, r.Generation, in.Node))
		}
	}
	d.Fence = len(d.Reasons) > 0
	if !d.Fence {
		d.Reasons = []string{in.Node + " is the primary and its agent holds the member lease"}
	}
	return d
}

// Agent runs `pgha agent` for one node of Env's file.
type Agent struct {
	Env  *Env
	Node string
	// Log is the decision log: "member lease held", "member lease lost",
	// "fence" with its reasons, "recorded".
	Log *slog.Logger
	// Interval is how often the agent checks its server and the record;
	// 0: failover.check_interval.
	Interval time.Duration

	lease  Lease
	ownGen int64
	// primarySeen: the last check found the node a primary; ownGen was
	// raised to the record's generation when it first did.
	primarySeen bool
	pending     []redis.Event // fences not yet in the catalog history
	unavail     string        // the last reason the lease could not be taken
	// stopRenew ends the renewer of the current lease's context.
	stopRenew context.CancelFunc
}

// Run holds the member lease and fences until ctx ends; the lease is
// released then (a stopped agent is not an isolated host). It returns an
// error when the file declares no agent block or no such node, or when
// another live agent holds this node's lease.
func (a *Agent) Run(ctx context.Context) error {
	c := a.Env.Cfg
	switch {
	case c.Agent == nil:
		return errors.New("the cluster file declares no agent block: add agent { self_fence = \"5s\" } so that the watcher knows to count on agents")
	case c.Node(a.Node) == nil:
		return fmt.Errorf("node %q is not declared in %s", a.Node, c.File)
	case a.Env.Members() == nil:
		return errors.New("the catalog cannot hold member leases")
	}
	ttl := c.Agent.LeaseTTL()
	interval := a.Interval
	if interval <= 0 {
		interval = c.Failover.CheckInterval
	}
	// A check no less often than the renewals: a restarted primary is
	// found (and stopped again) while the lease is away.
	interval = min(interval, ttl/3)
	a.Log.Info("agent started", "node", a.Node, "self_fence", c.Agent.SelfFence.String(), "lease_ttl", ttl.String(),
		"renew_every", (ttl / 3).String(), "fence_margin", c.Agent.FenceMargin().String(), "check_interval", interval.String())
	info := LockInfo("agent " + a.Node)
	t := time.NewTicker(interval)
	defer t.Stop()
	if err := a.hold(ctx, info, ttl); err != nil {
		return err
	}
	for {
		a.check(ctx)
		var lost <-chan struct{}
		if a.lease != nil {
			lost = a.lease.Lost()
		}
		select {
		case <-ctx.Done():
			a.Log.Info("agent stopping", "node", a.Node)
			if a.lease != nil {
				rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = a.lease.Release(rctx)
				cancel()
			}
			if a.stopRenew != nil {
				a.stopRenew()
			}
			return nil
		case <-lost:
			// Checked (and fenced) at once; the lease is tried again
			// only after that, since a try may wait ttl/3 for a store
			// that does not answer.
			a.lease = nil
			a.Log.Warn("member lease lost", "node", a.Node, "reason", "no renewal acknowledged within "+(ttl-c.Agent.FenceMargin()).String())
			continue
		case <-t.C:
		}
		if a.lease == nil {
			if err := a.hold(ctx, info, ttl); err != nil {
				return err
			}
		}
	}
}

// hold tries once to take the member lease. Only another live agent
// holding it is an error; a store that does not answer leaves the agent
// without a lease (and its primary fenced) until the next try.
func (a *Agent) hold(ctx context.Context, info state.Lock, ttl time.Duration) error {
	hctx, cancel := context.WithTimeout(ctx, ttl/3)
	defer cancel()
	// The lease renews for as long as ctx lives, not hctx: HoldMember's
	// first command is bounded by hctx through the client's own timeout.
	l, err := a.holdWith(ctx, hctx, info, ttl)
	var held *HeldError
	switch {
	case errors.As(err, &held):
		return fmt.Errorf("agent for %s: %w", a.Node, err)
	case err != nil:
		if why := firstLine(err.Error()); why != a.unavail {
			a.Log.Warn("member lease unavailable", "node", a.Node, "error", why)
			a.unavail = why
		}
		return nil
	}
	a.lease, a.unavail = l, ""
	a.Log.Info("member lease held", "node", a.Node, "ttl", ttl.String(), "id", info.ID)
	a.flush(ctx)
	return nil
}

// holdWith runs HoldMember with ctx for the lease's life, giving up on a
// first answer that takes longer than hctx allows.
func (a *Agent) holdWith(ctx, hctx context.Context, info state.Lock, ttl time.Duration) (Lease, error) {
	type result struct {
		l   Lease
		err error
	}
	ch := make(chan result, 1)
	lctx, cancel := context.WithCancel(ctx)
	go func() {
		l, err := a.Env.Members().HoldMember(lctx, a.Node, info, ttl)
		ch <- result{l, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			cancel()
			return nil, r.err
		}
		if a.stopRenew != nil {
			a.stopRenew() // the lease before this one, lost
		}
		a.stopRenew = cancel
		return r.l, nil
	case <-hctx.Done():
		// A late answer's renewer ends with lctx, deleting nothing: the
		// next try takes the key back (it holds this agent's ID), and a
		// Release here could delete that newer lease.
		cancel()
		return nil, fmt.Errorf("take the member lease of %s: no answer within %s", a.Node, ttl/3)
	}
}

// check looks at the node's server and, with the lease held, at the
// record; it fences when DecideFence says so.
func (a *Agent) check(ctx context.Context) {
	cn := a.Env.Cfg.Node(a.Node)
	running, primary, starting := a.observeSelf(ctx, cn)
	in := FenceInput{Node: a.Node, Running: running, Primary: primary, StartingStandby: starting, LeaseLost: a.lease == nil, OwnGeneration: a.ownGen}
	if a.lease != nil && running && primary && !starting {
		// The read gives way to a lost lease: the fence must not wait
		// for a store that does not answer.
		rctx, cancel := context.WithTimeout(ctx, a.Env.Cfg.Agent.LeaseTTL()/3)
		ok, rec, _, err := a.Env.store.Observe(leaseContext(rctx, a.lease))
		cancel()
		if a.lost() {
			in.LeaseLost, ok = true, false
		}
		if ok && err == nil && rec != nil {
			// The generation when the node is first seen a primary is
			// its own: a standby just promoted runs as a primary before
			// the failover records it.
			if rec.Primary == a.Node || !a.primarySeen {
				a.ownGen = max(a.ownGen, rec.Generation)
				a.primarySeen = true
			}
			in.OwnGeneration = a.ownGen
			in.Record = rec
		}
	}
	if !running || !primary || starting {
		a.primarySeen = false
	}
	d := DecideFence(in)
	if !d.Fence {
		return
	}
	start := time.Now()
	err := a.fence(ctx, cn)
	took := time.Since(start)
	outcome := "stopped"
	if err != nil {
		outcome = err.Error()
	}
	a.Log.Warn("fence", "node", a.Node, "reasons", d.Reasons, "lease_lost", in.LeaseLost, "started", start.UTC(), "took_ms", took.Milliseconds(), "outcome", outcome)
	gen := int64(0)
	if in.Record != nil {
		gen = in.Record.Generation
	}
	a.pending = append(a.pending, redis.Event{Time: start.UTC(), Kind: "agent.fence", Generation: gen,
		Message: fmt.Sprintf("the agent of %s stopped it: %s", a.Node, strings.Join(d.Reasons, "; ")),
		Details: map[string]string{"node": a.Node, "lease_lost": strconv.FormatBool(in.LeaseLost), "took_ms": strconv.FormatInt(took.Milliseconds(), 10), "outcome": outcome}})
	if a.lease != nil {
		a.flush(ctx)
	}
}

// leaseContext is a context that ends when l is lost (or parent ends).
func leaseContext(parent context.Context, l Lease) context.Context {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-l.Lost():
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx
}

// lost reports whether the held lease is lost (then it is dropped).
func (a *Agent) lost() bool {
	if a.lease == nil {
		return true
	}
	select {
	case <-a.lease.Lost():
		a.lease = nil
		a.Log.Warn("member lease lost", "node", a.Node, "reason", "no renewal acknowledged in time")
		return true
	default:
		return false
	}
}

// fence marks the node a standby (a restart by anyone brings back a
// standby, not a second primary) and stops its server at once. The mark
// comes first: it is a file written in microseconds, and a server that
// runs is not affected by it until it starts again.
func (a *Agent) fence(ctx context.Context, n *config.Node) error {
	markErr := a.Env.Runtime.MarkFenced(ctx, n)
	if err := a.Env.Runtime.Stop(ctx, n, "immediate"); err != nil {
		return fmt.Errorf("stop %s: %w", n.Name, err)
	}
	if markErr != nil {
		return fmt.Errorf("stopped, but mark %s a standby: %w", n.Name, markErr)
	}
	return nil
}

// observeSelf asks the runtime whether the node's server runs (and is
// still starting, with standby.signal) and pg_control whether it is a
// primary: no connection to the server, so that no network cut and no
// busy server stands in the way.
func (a *Agent) observeSelf(ctx context.Context, cn *config.Node) (running, primary, startingStandby bool) {
	s := &state.Cluster{Name: a.Env.Cfg.Name, Nodes: []*state.Node{{Name: cn.Name, Host: cn.Host, Port: cn.Port, DataDir: cn.DataDir}}}
	a.Env.Runtime.Observe(ctx, s, func(*config.Node, *state.Node) {}, ObserveOptions{Quick: true, NoAside: true})
	n := s.Node(cn.Name)
	if n == nil || !n.Running {
		return false, false, false
	}
	startingStandby = n.StandbySignal && pgdata.Starting(n.PMStatus)
	cd, err := a.Env.Runtime.ControlData(ctx, cn)
	if err != nil || cd["Database cluster state"] == "" {
		return true, !n.StandbySignal, startingStandby
	}
	return true, cd["Database cluster state"] == "in production", startingStandby
}

// flush writes the fences not yet recorded into the catalog history.
func (a *Agent) flush(ctx context.Context) {
	if a.Env.Catalog == nil {
		return
	}
	for len(a.pending) > 0 {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		err := a.Env.Catalog.AppendHistory(fctx, a.pending[0])
		cancel()
		if err != nil {
			return
		}
		a.Log.Info("recorded", "node", a.Node, "kind", a.pending[0].Kind, "at", a.pending[0].Time)
		a.pending = a.pending[1:]
	}
}
