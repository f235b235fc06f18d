package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/health"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// This file is `pgha watch`: every check_interval it observes the
// cluster, asks a Detector whether the primary is lost, plans, keeps what
// the policy of cluster.hcl permits (plan.Filter) and, when it is the one
// actor, runs that through Run under the cluster lock. Each decision is a
// log/slog record whose msg is one of the names fixed in the shared
// contract (WATCH.md), so that tests and benchmarks can read the log.

// Verdict is a Detector's judgement of the primary after one check.
type Verdict struct {
	// Node is the primary watched: the writable node, else the one the
	// catalog records, else the declared one.
	Node string
	// Suspect: the last checks failed, not (yet) enough or not confirmed.
	Suspect bool
	// Lost: the watcher may act (policy permitting).
	Lost                bool
	Failures, Threshold int
	Reason              string
	// ProcessDead: the runtime answers and says the server process is
	// gone, so restarting it in place is possible.
	ProcessDead bool
}

// Detector turns one observation per check, and the write probe's result
// on the primary (nil: the heartbeat committed, or no probe), into a
// Verdict. It keeps its count across calls; the watcher calls it from
// its one goroutine.
type Detector interface {
	Check(c *config.Cluster, s *state.Cluster, primary string, probe error) Verdict
}

// healthDetector is the health package's detector: failure_threshold
// failed checks in a row, confirmed by the standbys; a crash the runtime
// reports at once.
type healthDetector struct{ d *health.Detector }

// NewDetector is the detector for c's failover block.
func NewDetector(c *config.Cluster) Detector {
	return healthDetector{health.New(health.Config{Threshold: c.Failover.FailureThreshold, Interval: c.Failover.CheckInterval})}
}

func (h healthDetector) Check(c *config.Cluster, s *state.Cluster, primary string, probe error) Verdict {
	v := h.d.Update(health.FromCluster(c, s, primary, probe))
	return Verdict{Node: v.Primary, Suspect: v.Status == health.Suspect, Lost: v.Status == health.Lost,
		Failures: v.Failures, Threshold: v.Threshold, Reason: v.Reason, ProcessDead: v.ProcessDead}
}

// watchedPrimary is the node whose health decides a failover: the one
// writable node, else the catalog's primary, else the declared one.
func watchedPrimary(c *config.Cluster, s *state.Cluster, known string) string {
	if p := onlyWritable(s); p != "" {
		return p
	}
	if rec := s.Catalog.Record; rec != nil && rec.Primary != "" && c.Node(rec.Primary) != nil {
		return rec.Primary
	}
	// No writable node and no record (the authority or the catalog does
	// not answer): the primary this watcher last knew, not cluster.hcl's,
	// which a failover may have left long ago. Checking cluster.hcl's
	// primary there took a standby for a read-only primary and never saw
	// the real one die (TestLocalEtcdAuthority in CI: db3 promoted, etcd
	// majority lost, db3 killed, the watcher watched db1).
	if known != "" && c.Node(known) != nil {
		return known
	}
	return c.Primary
}

// onlyWritable is the one node s observed accepting writes, or "" when
// none or several do.
func onlyWritable(s *state.Cluster) string {
	var writable []string
	for _, n := range s.Nodes {
		if n.Role() == state.RolePrimary {
			writable = append(writable, n.Name)
		}
	}
	if len(writable) == 1 {
		return writable[0]
	}
	return ""
}

// Leader is the one-actor lease among watchers: only its holder acts.
// Lead tries to take or keep it without waiting; holder names who has it
// when this watcher does not. Release gives it up (SIGTERM).
type Leader interface {
	Lead(ctx context.Context) (ok bool, holder string, err error)
	Release(ctx context.Context) error
}

// leaseLeader is the Leader of a watcher: the store's leader lease
// (pgha:{cluster}:leader on Redis), taken with the watcher's Env and
// renewed in the background for as long as the context it was taken
// with. Without a catalog there is nothing to agree in: the cluster
// lock (a file lock then) alone makes one actor.
type leaseLeader struct {
	w     *Watcher
	lease Lease
}

func (l *leaseLeader) Lead(ctx context.Context) (bool, string, error) {
	if l.lease != nil && !l.dropLost() {
		return true, "", nil
	}
	ttl := l.w.Env.leaderTTL()
	if ttl <= 0 {
		ttl = redis.DefaultLeaderTTL
	}
	lease, err := l.w.Env.AcquireLeader(ctx, LockInfo("watch"), ttl)
	var held *HeldError
	switch {
	case errors.Is(err, ErrNoCatalog):
		return true, "", nil
	case errors.As(err, &held) && errors.Is(err, ErrLeaderHeld):
		holder := "another watcher"
		if held.Holder != nil {
			holder = held.Holder.String()
		}
		return false, holder, nil
	case err != nil:
		return false, "", err
	}
	l.lease = lease
	return true, "", nil
}

// dropLost forgets a lease that is Lost, saying why ("leader lost"),
// and reports whether it did. A watcher that cannot reach its authority
// calls it at each check: it acts on nothing then, and the log says when
// its lease went, not only at its next try to act.
func (l *leaseLeader) dropLost() bool {
	if l.lease == nil {
		return false
	}
	select {
	case <-l.lease.Lost():
	default:
		return false
	}
	why := leaseWhy(l.lease)
	l.lease = nil
	l.w.closeLeaseEnv()
	l.w.Log.Warn("leader lost", "error", why)
	l.w.leading = false
	return true
}

func (l *leaseLeader) Release(ctx context.Context) error {
	if l.lease == nil {
		return nil
	}
	err := l.lease.Release(ctx)
	l.lease = nil
	return err
}

// restartWindow bounds a restart in place: a primary whose process died
// and that is not back this long after the first restart (tried again at
// each check) is failed over.
// Patroni and pg_auto_failover restart a crashed PostgreSQL in 4–5 s.
func restartWindow(c *config.Cluster) time.Duration {
	return max(10*time.Second, 5*c.Failover.CheckInterval)
}

// recheckAfter is how soon the check after one that saw the primary's
// process dead, but not yet confirmed by the standbys, comes.
func recheckAfter(c *config.Cluster) time.Duration {
	return min(200*time.Millisecond, c.Failover.CheckInterval)
}

// Watcher is the loop of `pgha watch`. Its fields are set before Run
// and not changed after; it runs in the goroutine that calls Run (or
// Tick), and Reload hands it a new cluster file from any goroutine.
type Watcher struct {
	Env      *Env
	Log      *slog.Logger
	Detector Detector // nil: NewDetector of the file, made again on reload
	// WriteProbe: write the heartbeat row on the primary at each check,
	// so that a wedged write path counts as a failed check. Off in unit
	// tests, whose servers are fakes.
	WriteProbe bool
	Leader     Leader // nil: the store's leader lease (none without a catalog)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Observer, when set, is told each observation as soon as it is made
	// (before anything is done about it), each operation the watcher ran,
	// and each iteration's end: what `pgha watch`'s API serves.
	Observer WatchObserver

	reload chan *Env
	// leaseEnv is the Env the leader lease renews through when an edit
	// of the file kept it (see keepLease); nil when that is w.Env.
	leaseEnv *Env
	initOnce sync.Once

	sit        plan.Situation
	leading    bool
	lastHeld   string
	lastSusp   int
	lost       string    // the node declared lost, until healthy again
	restarting time.Time // first restart in place of lost, zero when none
	gaveUp     string    // why restart in place was abandoned
	// agentWait is why a failover waits for the lost primary's member
	// lease to go (agentGate), since agentWaitSince; "" when it does not.
	agentWait      string
	agentWaitSince time.Time
	restartErr     string // the last restart's error
	// lostRechecked: the node lost with its process seen alive that was
	// observed once more before a failover (primary_crash = "restart").
	lostRechecked string

	// A healing or edit that failed, retried no sooner than retryAt.
	failKey    string
	failStreak int
	failErr    error
	retryAt    time.Time
	catalogOut bool
	// catalogLost: the primary was lost while the catalog was away.
	catalogLost  bool
	catalogRetry time.Time
	busy         string
	// recheck: the last check saw the primary's process dead without the
	// standbys' agreement yet; the next comes after recheckAfter.
	recheck bool
	// lastWritable: the last observation had a writable node.
	lastWritable bool
	// lastPrimary: the one writable node of the last observation ("" for
	// none or several). An edit declaring it primary asks for no
	// switchover: it is carried out already.
	lastPrimary string
	// knownPrimary: the primary the last check watched (writable, or the
	// record's); what it watches while neither answers.
	knownPrimary string
	// lastIntended: the last observation's record holds the intent of a
	// switchover from its writable node to the declared primary.
	lastIntended bool
	beat         *postgres.Heartbeater
	beatNode     string
}

// Observation is one check of the watcher: the file it checked against,
// what it saw, the detector's verdict on the primary, and whether this
// watcher leads.
type Observation struct {
	Cfg     *config.Cluster
	State   *state.Cluster
	Verdict Verdict
	Leading bool
	// Unwritable: the write probe on Verdict.Node, which runs after the
	// observation, failed for another reason than slowness (the server
	// refused or dropped the write: read-only, the connection refused or
	// terminated by a postmaster's death), and why. A load balancer's
	// /primary then says no at once: a server whose postmaster was just
	// killed can still answer the observation's queries, or have answered
	// them just before.
	Unwritable string
}

// unwritable is Observation.Unwritable for the write probe's result: why
// the server refused or dropped the write, "" when it committed or was
// only slow (a busy primary is still the primary).
func unwritable(probe error) string {
	if probe == nil || errors.Is(probe, postgres.ErrWriteTimeout) {
		return ""
	}
	return probe.Error()
}

// WatchObserver follows a Watcher from outside its goroutine. Its methods
// are called from the watcher's loop and must not block it.
type WatchObserver interface {
	// Observing: an observation starts (Observed follows with it). An
	// observer that also observes by itself must not interleave its
	// observations with the watcher's: two observations running at once
	// read a node at different moments, and the one started later may
	// have read it earlier (a dead primary seen alive again).
	Observing()
	Observed(o Observation)
	// Ran: an operation ("apply", "failover") ran p, ending with err;
	// p is nil when no plan was made (the lock was busy).
	Ran(op string, p *plan.Plan, err error)
	// Iterated: one iteration ended after took.
	Iterated(took time.Duration, o Outcome)
}

// Outcome is what one iteration did.
type Outcome struct {
	Converged bool     // the plan of the file is empty
	Acted     []string // the IDs of the actions run
	Held      int      // actions held by policy
	Err       error
}

func (w *Watcher) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Watcher) detector() Detector {
	if w.Detector == nil {
		w.Detector = NewDetector(w.Env.Cfg)
	}
	return w.Detector
}

// probe writes the heartbeat on primary when it answers as a writable
// primary, within half a check interval, over a connection kept while
// the primary stays the same. It returns nil when it did not probe: an
// unreachable primary is already a failed check.
func (w *Watcher) probe(ctx context.Context, s *state.Cluster, primary string) error {
	if !w.WriteProbe {
		return nil
	}
	n, cn := s.Node(primary), w.Env.Cfg.Node(primary)
	if n == nil || cn == nil || !n.Reachable || n.InRecovery {
		// Its connection, if any, is to a server that is gone or no
		// longer a primary: kept, the first beat after a restart in
		// place failed on it ("conn closed") and counted a failed check.
		w.closeProbe()
		return nil
	}
	if w.beatNode != primary || w.beat == nil {
		w.closeProbe()
		w.beat, w.beatNode = postgres.NewHeartbeater(w.Env.superuser(cn)), primary
	}
	return w.beat.Beat(ctx, max(w.Env.Cfg.Failover.CheckInterval/2, 200*time.Millisecond))
}

func (w *Watcher) closeProbe() {
	if w.beat != nil {
		w.beat.Close()
		w.beat, w.beatNode = nil, ""
	}
}

// Reload hands the watcher a new Env for an edited, valid cluster file;
// it takes effect at the next iteration, which starts at once. The
// previous Env is closed by the loop.
func (w *Watcher) Reload(e *Env) {
	w.init()
	select {
	case w.reload <- e:
	default:
		// A newer file replaces one not yet taken.
		select {
		case old := <-w.reload:
			old.Close()
		default:
		}
		w.reload <- e
	}
}

// init makes the reload channel once, whichever of Run and Reload (from
// the file watcher's goroutine) comes first.
func (w *Watcher) init() {
	w.initOnce.Do(func() { w.reload = make(chan *Env, 1) })
}

// Run loops until ctx ends: one iteration at once, then one every
// check_interval of the current file, and one at once after a reload.
// It returns nil when stopped by ctx; the leader lease is released.
func (w *Watcher) Run(ctx context.Context) error {
	w.init()
	w.Log.Info("watch started", "cluster", w.Env.Cfg.Name, "file", w.Env.Cfg.File, "hash", w.Env.Cfg.Hash,
		"check_interval", w.Env.Cfg.Failover.CheckInterval.String(), "failure_threshold", w.Env.Cfg.Failover.FailureThreshold)
	w.lead(ctx)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			w.Log.Info("stopping")
			w.Stop()
			return nil
		case e := <-w.reload:
			w.swap(e)
			// swap gave up the lease held through the old Env: take it
			// again at once, or another watcher takes it at its next
			// check and the leader changes at every edit of the file.
			w.lead(ctx)
		case <-timer.C:
		}
		start := w.now()
		o := w.Tick(ctx)
		if w.Observer != nil {
			w.Observer.Iterated(w.now().Sub(start), o)
		}
		// The interval is counted from the start of the check, so that a
		// slow observation does not stretch detection.
		next := w.Env.Cfg.Failover.CheckInterval
		if w.recheck {
			next = recheckAfter(w.Env.Cfg)
		}
		timer.Reset(max(next-w.now().Sub(start), 0))
	}
}

// Stop releases the leader lease, so that another watcher may lead at
// once rather than after its TTL, and closes the Env. Run calls it when
// its context ends; `pgha watch -once` after its Tick.
func (w *Watcher) Stop() {
	w.closeProbe()
	w.release()
	w.Env.Close()
}

func (w *Watcher) release() {
	if w.Leader == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := w.Leader.Release(ctx); err != nil {
		w.Log.Warn("leader lost", "error", "release: "+err.Error())
	}
	w.leading = false
	w.closeLeaseEnv()
}

// swap installs a reloaded file. Whether its primary changed decides how
// a switchover is judged (an edit, not a failback); whether anything
// changed, how healing is judged with watch.config = "plan".
func (w *Watcher) swap(e *Env) {
	old := w.Env.Cfg
	if e.Cfg.Hash == old.Hash {
		e.Close()
		return
	}
	w.Log.Info("config changed", "hash", e.Cfg.Hash, "previous", old.Hash)
	w.sit.Edited = true
	if e.Cfg.Primary != old.Primary {
		// An edit that declares the node already writable (the file
		// following a failover) is carried out at once: were that node to
		// crash and be failed over before the watcher next converged, a
		// switch back to it would be a failback, which only
		// failover.failback = "automatic" permits, not this edit's doing.
		w.sit.PrimaryEdited = e.Cfg.Primary != w.lastPrimary
	}
	w.keepLease(old, e.Cfg)
	e.Actor = w.Env.Actor
	w.Env = e
	w.lastHeld = ""
	if _, ok := w.Detector.(healthDetector); ok && (e.Cfg.Failover.FailureThreshold != old.Failover.FailureThreshold ||
		e.Cfg.Failover.CheckInterval != old.Failover.CheckInterval) {
		w.Detector = NewDetector(e.Cfg)
	}
	w.closeProbe()
}

// keepLease hands the leader lease over an edit of the file. The lease
// renews through the catalog client of the Env it was taken with: when
// the edit leaves the authority as it was (the cluster's name, the
// catalog's address, credentials and TLS), that Env stays open for the
// renewals, until the lease is released or lost, and the lease is kept.
// Giving it up and taking it again left a gap in which another watcher
// took the lead at every edit. Another authority needs a lease of its
// own: the old one is released and the next iteration takes the new one.
func (w *Watcher) keepLease(old, next *config.Cluster) {
	if l, ok := w.Leader.(*leaseLeader); ok && l.lease != nil && w.leading && sameAuthority(old, next) {
		if w.leaseEnv == nil {
			w.leaseEnv = w.Env // the lease's client: closed with the lease
		} else {
			w.Env.Close() // an Env between two edits, holding nothing
		}
		return
	}
	w.release()
	w.Env.Close()
}

// sameAuthority reports whether two versions of the file name the same
// store for the lock, the lease and the record.
func sameAuthority(a, b *config.Cluster) bool {
	if a.Name != b.Name || (a.Authority == nil) != (b.Authority == nil) {
		return false
	}
	if x, y := a.Authority, b.Authority; x != nil {
		return slices.Equal(x.Endpoints, y.Endpoints) && x.Username == y.Username && x.Password.Reveal() == y.Password.Reveal() &&
			x.TTL == y.TTL && x.CAFile == y.CAFile && x.CertFile == y.CertFile && x.KeyFile == y.KeyFile
	}
	if (a.Catalog == nil) != (b.Catalog == nil) {
		return false
	}
	if a.Catalog == nil {
		return true
	}
	x, y := a.Catalog, b.Catalog
	return x.Kind == y.Kind && x.Address == y.Address && x.DB == y.DB && x.Managed == y.Managed &&
		x.Password.Reveal() == y.Password.Reveal() &&
		(catalogTLS(a) == nil) == (catalogTLS(b) == nil) && a.TLS.Dir == b.TLS.Dir
}

// closeLeaseEnv closes the Env a kept lease renewed through, once the
// lease is gone.
func (w *Watcher) closeLeaseEnv() {
	if w.leaseEnv != nil {
		w.leaseEnv.Close()
		w.leaseEnv = nil
	}
}

// Tick runs one iteration: observe, detect, plan, filter, act. It is
// `pgha watch -once` and each turn of Run.
func (w *Watcher) Tick(ctx context.Context) Outcome {
	e, c := w.Env, w.Env.Cfg
	t0 := time.Now()
	if w.Observer != nil {
		w.Observer.Observing()
	}
	s := e.ObserveWith(ctx, ObserveOptions{Quick: true})
	w.Log.Debug("observed", "took_ms", time.Since(t0).Milliseconds())
	if ctx.Err() != nil {
		return Outcome{Err: ctx.Err()}
	}

	primary := watchedPrimary(c, s, w.knownPrimary)
	w.knownPrimary = primary
	w.lastPrimary = onlyWritable(s)
	if w.lastPrimary != "" && w.lastPrimary == c.Primary {
		// The edited primary is the writable one: the edit is carried out.
		w.sit.PrimaryEdited = false
	}
	probe := w.probe(ctx, s, primary)
	v := w.detector().Check(c, s, primary, probe)
	if w.Observer != nil {
		w.Observer.Observed(Observation{Cfg: c, State: s, Verdict: v, Leading: w.leading, Unwritable: unwritable(probe)})
	}
	// The runtime says the primary's process is gone and a standby still
	// reports streaming from it: the standby has not noticed yet (its WAL
	// receiver learns of the closed connection a few milliseconds later).
	// The next check comes sooner than the interval, so that a crash is
	// not held a whole interval on that; the verdict needs the standbys'
	// agreement all the same, and the failure count of the threshold
	// path is not what decides it (a dead process is lost at once).
	w.recheck = v.Suspect && health.FromCluster(c, s, primary, nil).ProcessDead
	switch {
	case v.Lost:
		if w.lost != v.Node {
			w.lost = v.Node
			w.Log.Warn("primary lost", "node", v.Node, "reason", v.Reason, "failures", v.Failures, "process_dead", v.ProcessDead)
		}
	case v.Suspect:
		if v.Failures != w.lastSusp {
			w.Log.Warn("primary suspect", "node", v.Node, "failures", v.Failures, "threshold", v.Threshold, "reason", v.Reason)
		}
	default:
		if w.lost != "" {
			w.Log.Info("primary healthy", "node", v.Node)
		}
		w.lost, w.restarting, w.gaveUp, w.restartErr, w.lostRechecked = "", time.Time{}, "", "", ""
		w.agentWait, w.agentWaitSince = "", time.Time{}
	}
	w.lastSusp = v.Failures

	// The lock, the record and the generation live in the catalog: a
	// watcher that cannot reach it acts on nothing, and never promotes.
	// With authority "etcd" they live there (a majority of its members
	// must answer), and Redis holds only backups and history.
	if a := s.Authority; a != nil && !a.Reachable {
		if !w.catalogOut || (v.Lost && !w.catalogLost) {
			why := a.Error
			if why == "" {
				why = "no answer from " + strings.Join(a.Endpoints, ",")
			}
			w.Log.Error("authority unreachable", "error", why, "members_answering", a.Answering, "primary", primary, "primary_lost", v.Lost,
				"decision", "no action: the lock, the leader lease and the record are in etcd, which has no majority here")
		}
		w.catalogOut, w.catalogLost = true, v.Lost
		if l, ok := w.Leader.(*leaseLeader); ok {
			l.dropLost()
		}
		return Outcome{Err: errors.New("authority unreachable")}
	}
	if c.Authority == nil && c.Catalog != nil && !s.Catalog.Reachable {
		// Said when it goes away, and again when the primary is lost
		// meanwhile: that is when not promoting needs its reason.
		if !w.catalogOut || (v.Lost && !w.catalogLost) {
			why := s.Catalog.Error
			if why == "" {
				why = "no answer from " + c.Catalog.Address
			}
			w.Log.Error("catalog unreachable", "error", why, "primary", primary, "primary_lost", v.Lost)
		}
		w.catalogOut, w.catalogLost = true, v.Lost
		w.startCatalog(ctx)
		return Outcome{Err: errors.New("catalog unreachable")}
	}
	if w.catalogOut {
		if a := s.Authority; a != nil {
			w.Log.Info("authority reachable", "endpoints", strings.Join(a.Endpoints, ","), "members_answering", a.Answering)
		} else {
			w.Log.Info("catalog reachable", "address", c.Catalog.Address)
		}
		w.catalogOut = false
	}

	switch {
	case v.Lost:
		return w.onLost(ctx, s, v)
	case v.Suspect:
		// The detector decides about the primary: healing now would
		// restart it (whatever primary_crash says) before the verdict,
		// and re-point standbys away from a primary that may be back.
		return Outcome{}
	}
	return w.converge(ctx, s)
}

// startCatalog starts a managed catalog that is down (watch.heal): it
// holds the lock, the record and the leader lease, so nothing else can be
// done without it, and starting Redis touches no cluster data (pgha apply
// does the same before it locks). Tried every 5 s at most; its outcome
// is logged as a heal.
func (w *Watcher) startCatalog(ctx context.Context) {
	c := w.Env.Cfg
	if !c.Catalog.Managed || !c.Watch.Heal || w.now().Before(w.catalogRetry) {
		return
	}
	w.catalogRetry = w.now().Add(5 * time.Second)
	w.Log.Info("heal", "action", string(plan.CatalogStart), "reason", "the managed catalog does not answer")
	// Bounded, so that a catalog that cannot come back does not hold up
	// the checks (and the word that it is away) for long.
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	outcome := "done"
	if err := w.Env.startCatalog(sctx, io.Discard); err != nil {
		outcome = err.Error()
	}
	w.Log.Info("apply", "operation", "apply", "actions", []string{string(plan.CatalogStart)}, "outcome", outcome)
}

// onLost restarts a crashed primary in place or fails over, per
// failover.primary_crash and failover.automatic.
func (w *Watcher) onLost(ctx context.Context, s *state.Cluster, v Verdict) Outcome {
	c := w.Env.Cfg
	// A primary stopped by a switchover that was interrupted (pgha apply
	// killed after it stopped the old primary) is finished, losing
	// nothing, rather than restarted or failed over. The plan knows it
	// by the switchover's intent in the catalog record: without one, the
	// same state (the recorded primary stopped, the others standbys) is
	// a crash, restarted or failed over below.
	if p := plan.BuildWith(c, s, w.buildOptions(s)); slices.ContainsFunc(p.Actions, func(a plan.Action) bool {
		return a.Kind == plan.Switchover && a.Params.Resume
	}) {
		return w.converge(ctx, s)
	}
	if !v.ProcessDead && c.Failover.PrimaryCrash == "restart" && w.lostRechecked != v.Node {
		// Lost by failures in a row while the runtime, asked at the start
		// of this check, saw the server process alive: a crash between the
		// two looks the same, and primary_crash = "restart" wants a crash
		// restarted in place, not failed over. The runtime is asked once
		// more, recheckAfter from now, before this verdict fails over (a
		// loaded machine's timeouts had made the failures, then a kill -9
		// came: TestLocalWatch failed over where it should have restarted).
		w.lostRechecked, w.recheck = v.Node, true
		w.Log.Info("lost recheck", "node", v.Node, "reason", "the runtime saw its process alive at this check: asked again before failing over")
		return Outcome{}
	}
	noRestart, wait := agentGate(c, s, v.Node)
	if wait != "" {
		if wait != w.agentWait {
			w.agentWait, w.agentWaitSince = wait, w.now()
			w.Log.Warn("failover waits", "node", v.Node, "reason", wait)
		}
		return Outcome{Held: 1}
	}
	if w.agentWait != "" {
		w.Log.Info("failover waits", "node", v.Node, "outcome", "over", "reason", "the member lease of "+v.Node+" is gone, or the runtime reaches it again", "waited_ms", w.now().Sub(w.agentWaitSince).Milliseconds())
		w.agentWait, w.agentWaitSince = "", time.Time{}
	}
	if noRestart != "" && w.gaveUp == "" && v.ProcessDead && c.Failover.PrimaryCrash == "restart" {
		w.gaveUp = "no restart in place: " + noRestart
		w.Log.Warn("restart in place", "node", v.Node, "outcome", "skipped", "reason", noRestart)
	}
	if v.ProcessDead && c.Failover.PrimaryCrash == "restart" && w.gaveUp == "" {
		if w.restarting.IsZero() {
			w.restarting = w.now()
			w.Log.Warn("restart in place", "node", v.Node, "reason", v.Reason, "within", restartWindow(c).String())
		}
		if w.now().Sub(w.restarting) < restartWindow(c) {
			// A start refused right after the crash (its orphaned
			// backends still hold the shared memory for a moment) is
			// tried again at the next check, until the window ends.
			out := w.act(ctx, "apply", v.Node, true, func(p *plan.Plan) *plan.Plan { return restartOnly(p, v.Node) })
			if out.Err != nil && !errors.Is(out.Err, errBusy) && !errors.Is(out.Err, errNotLeader) {
				w.restartErr = firstLine(out.Err.Error())
			}
			return out
		}
		w.gaveUp = fmt.Sprintf("restart in place did not bring %s back within %s", v.Node, restartWindow(c))
		if w.restartErr != "" {
			w.gaveUp += " (last attempt: " + w.restartErr + ")"
		}
		w.Log.Warn("restart in place", "node", v.Node, "outcome", "failed", "reason", w.gaveUp)
	}
	if ok, why := plan.Permit(c, plan.Action{Kind: plan.Failover}); !ok {
		w.logHeld([]plan.Held{{Action: plan.Action{ID: "failover", Kind: plan.Failover, Node: v.Node}, Reason: why}})
		return Outcome{Held: 1}
	}
	reason := "primary " + v.Node + " lost: " + v.Reason
	if w.gaveUp != "" {
		reason += "; " + w.gaveUp
	}
	return w.act(ctx, "failover", reason, true, nil)
}

// agentGate is what the node agents (agent block) change in replacing a
// lost primary, read from the member leases of the observation:
//
//   - noRestart says why the primary is not restarted in place: its
//     agent stopped and marked it (standby.signal), or holds no lease
//     (the host may be cut off, where the agent would stop it again);
//   - wait says why no standby may be promoted yet: the runtime cannot
//     reach the node to fence it and its agent still holds the lease, so
//     the agent's host reaches the authority and nothing has stopped the
//     primary for sure. Where the runtime cannot reach the node, only an
//     absent lease proves, by the arithmetic of config.Agent, that the
//     primary stopped taking writes.
//
// A node the runtime observes stopped and marked a standby (its agent
// fenced it) is not waited for, lease or no lease: the runtime's own
// observation is the proof, and the failover fences it once more
// (node.fence) before it promotes. Waiting for that lease cost the
// fault campaign its slowest recoveries: when etcd regains its majority
// its new leader grants every lease a full ttl again, and the agent,
// alive, renews it, so the watcher waited a lease ttl and a check for
// nothing (etcd majority lost: median 28 s to converge, bench -chaos).
//
// Without agents, or without the leases read, both are "".
func agentGate(c *config.Cluster, s *state.Cluster, node string) (noRestart, wait string) {
	if c.Agent == nil || s.Catalog.Members == nil {
		return "", ""
	}
	n := s.Node(node)
	if n == nil {
		return "", ""
	}
	holder, held := s.Catalog.Members[node]
	fenced := !n.Running && n.StandbySignal
	switch {
	case fenced:
		noRestart = "its agent stopped it and marked it a standby (self-fencing)"
	case !held:
		noRestart = "its agent holds no member lease: its host may be cut off from the authority, where a restarted primary would be stopped again"
	}
	if held && n.RuntimeError != "" {
		wait = fmt.Sprintf("the runtime cannot reach %s to fence it (%s) and its agent (%s) still holds the member lease: %s may still take writes; promoting waits until the lease expires (self_fence %s)",
			node, n.RuntimeError, holder.String(), node, c.Agent.SelfFence)
	}
	return noRestart, wait
}

// restartOnly keeps, of an apply plan, the start of the crashed primary
// (and what it depends on): a restart in place, permitted by
// primary_crash = "restart" whatever watch.heal says.
func restartOnly(p *plan.Plan, node string) *plan.Plan {
	return plan.Subset(p, func(a plan.Action) bool { return a.Kind == plan.NodeStart && a.Node == node }, false)
}

// converge plans the file against the cluster and runs what the policy
// permits.
func (w *Watcher) converge(ctx context.Context, s *state.Cluster) Outcome {
	c := w.Env.Cfg
	opts := w.buildOptions(s)
	p := plan.BuildWith(c, s, opts)
	if s.RuntimeError != "" {
		// Not converged: nothing could be compared. The next round asks
		// the runtime again.
		return Outcome{Err: fmt.Errorf("runtime: %s", s.RuntimeError)}
	}
	if p.Empty() {
		if w.sit.Edited {
			w.Log.Info("converged", "hash", c.Hash)
		}
		w.sit = plan.Situation{}
		w.lastHeld = ""
		return Outcome{Converged: true}
	}
	run, held := plan.Filter(c, p, w.sit)
	w.logHeld(held)
	if len(run.Actions) == 0 {
		return Outcome{Held: len(held)}
	}
	key := actionIDs(run)
	if key == w.failKey && w.now().Before(w.retryAt) {
		return Outcome{Held: len(held), Err: w.failErr}
	}
	out := w.act(ctx, "apply", "", false, func(p *plan.Plan) *plan.Plan {
		run, _ := plan.Filter(c, p, w.sit)
		return run
	})
	out.Held = len(held)
	w.backoff(key, out.Err)
	return out
}

// backoff spaces out retries of the same failing healing or edit (2 s,
// 4 s ... 1 min), so that a node that cannot start is not restarted, and
// logged, every second; anything else planned is tried at once. Failover
// and restart in place never wait for it.
func (w *Watcher) backoff(key string, err error) {
	if err == nil || errors.Is(err, errBusy) || errors.Is(err, errNotLeader) {
		w.failKey, w.failStreak, w.failErr = "", 0, nil
		return
	}
	if key != w.failKey {
		w.failKey, w.failStreak = key, 0
	}
	w.failStreak++
	wait := min(time.Second<<min(w.failStreak, 6), time.Minute)
	w.retryAt, w.failErr = w.now().Add(wait), err
	w.Log.Info("backoff", "actions", key, "retry_in", wait.String(), "failures", w.failStreak)
}

// actionIDs names a plan's actions, in order, space separated.
func actionIDs(p *plan.Plan) string {
	ids := make([]string, len(p.Actions))
	for i, a := range p.Actions {
		ids[i] = a.ID
	}
	return strings.Join(ids, " ")
}

// buildOptions keeps a failed-over primary unless failback is automatic
// or the file's primary was edited: otherwise the plan's switchover back
// would only be held, and with it the rejoin of the former primary,
// which must follow the new one. With no writable node at all the
// switchover is left in, so that an interrupted one is finished; so it
// is when the catalog records the intent of the switchover from the
// writable node to the declared one (a pgha began it and was
// interrupted before it stopped anything: it runs again).
func (w *Watcher) buildOptions(s *state.Cluster) plan.Options {
	o, writable, intended := watchOptions(w.Env.Cfg, s, w.sit.PrimaryEdited)
	w.lastWritable, w.lastIntended = writable, intended
	return o
}

// watchOptions is buildOptions for a file, an observation, and whether
// the file's primary was edited since the watcher last converged. It
// also says whether the observation had a writable node, and whether
// its record holds the intent of a switchover from it to the file's
// primary.
func watchOptions(c *config.Cluster, s *state.Cluster, primaryEdited bool) (o plan.Options, writable, intended bool) {
	var nodes []string
	for _, n := range s.Nodes {
		if n.Role() == state.RolePrimary {
			nodes = append(nodes, n.Name)
		}
	}
	rec := s.Catalog.Record
	writable = len(nodes) > 0
	intended = len(nodes) == 1 && rec.Switching() && rec.SwitchingFromNode() == nodes[0] && rec.SwitchingTo == c.Primary
	keep := c.Failover.Failback != "automatic" && !primaryEdited && writable && !intended
	return plan.Options{NoSwitchover: keep}, writable, intended
}

// WatchPlan is what `pgha watch` would do about s now: the plan it makes
// (a failed-over primary kept unless failback is automatic), split by the
// policy of c into what it runs and what it holds for `pgha apply`, with
// the reasons. The API shows it; the watcher itself also knows whether
// the file was edited since it last converged, which WatchPlan takes as
// not.
func WatchPlan(c *config.Cluster, s *state.Cluster) (p *plan.Plan, run *plan.Plan, held []plan.Held) {
	o, _, _ := watchOptions(c, s, false)
	p = plan.BuildWith(c, s, o)
	run, held = plan.Filter(c, p, plan.Situation{})
	return p, run, held
}

// lead takes or keeps the leader lease and logs the changes: "leader
// acquired", "not leader" with the holder (once per holder), "leader
// lost". It returns errNotLeader when another watcher leads.
func (w *Watcher) lead(ctx context.Context) error {
	if w.Leader == nil {
		w.Leader = &leaseLeader{w: w}
	}
	ok, holder, err := w.Leader.Lead(ctx)
	switch {
	case err != nil:
		if w.leading {
			w.Log.Warn("leader lost", "error", err.Error())
		} else if w.busy != "leader error" {
			w.Log.Warn("not leader", "error", err.Error())
		}
		w.leading, w.busy = false, "leader error"
		return fmt.Errorf("leader lease: %w", err)
	case !ok:
		if w.leading || w.busy != "leader:"+holder {
			w.Log.Info("not leader", "holder", holder)
		}
		w.leading, w.busy = false, "leader:"+holder
		return errNotLeader
	case !w.leading:
		w.Log.Info("leader acquired", "cluster", w.Env.Cfg.Name)
		w.leading, w.busy = true, ""
	}
	return nil
}

var (
	errBusy      = errors.New("lock busy")
	errNotLeader = errors.New("not leader")
)

// act runs one operation through Run when this watcher is the one actor:
// the plan is made again under the cluster lock, filtered, logged action
// by action, and executed. why says what led to it (a failover's cause).
// quick: the plan under the lock is made from a Quick observation (a
// restart in place, a failover: the write path is down meanwhile).
func (w *Watcher) act(ctx context.Context, op, why string, quick bool, filter func(*plan.Plan) *plan.Plan) Outcome {
	if err := w.lead(ctx); err != nil {
		return Outcome{Err: err}
	}
	var planned *plan.Plan
	wrapped := func(p *plan.Plan) *plan.Plan {
		if filter != nil {
			p = filter(p)
		}
		planned = p
		w.logPlanned(op, why, p)
		return p
	}
	o := RunOptions{PlanOptions: PlanOptions{Operation: op, Observe: ObserveOptions{Quick: quick, NoAside: quick}}, LockTimeout: 0, Filter: wrapped,
		Events: both(w.timings(), warnLog{w.Log})}
	if r, ok := w.Observer.(Reporter); ok {
		// The observer follows the operation's steps too: the API
		// observes again as soon as a failover recorded its new primary,
		// rather than after the re-pointing that follows.
		o.Events = both(o.Events, r)
	}
	if op == "apply" {
		o.Build = w.buildOptionsNow()
	}
	if st := stepLogOf(o.Events); st != nil {
		w.Env.Trace = st.step
		defer func() { w.Env.Trace = nil }()
	}
	_, err := w.Env.Run(ctx, o)
	var held *HeldError
	if errors.As(err, &held) && errors.Is(err, ErrLockBusy) {
		holder := held.Error()
		if held.Holder != nil {
			holder = held.Holder.String()
		}
		if w.busy != holder {
			w.Log.Info("lock busy", "holder", holder)
		}
		w.busy = holder
		return Outcome{Err: errBusy}
	}
	w.busy = ""
	var ids []string
	if planned != nil {
		for _, a := range planned.Actions {
			ids = append(ids, a.ID)
		}
	}
	if w.Observer != nil {
		w.Observer.Ran(op, planned, err)
	}
	outcome := "done"
	if err != nil {
		outcome = err.Error()
	}
	if len(ids) > 0 || err != nil {
		level := slog.LevelInfo
		if err != nil {
			level = slog.LevelError
		}
		w.Log.Log(ctx, level, "apply", "operation", op, "actions", ids, "outcome", outcome)
	}
	return Outcome{Acted: ids, Err: err}
}

// timings is a Reporter that logs, at debug level, when an operation's
// plan was made (the lock taken and the cluster observed again) and how
// long each action took, measured from the start of the operation: what
// a restart in place or a failover spends its time on.
func (w *Watcher) timings() Reporter {
	if !w.Log.Enabled(context.Background(), slog.LevelDebug) {
		return nil
	}
	return &stepLog{log: w.Log, start: time.Now()}
}

// warnLog logs the notes of an operation marked Warn (report.Note): what
// went wrong beside an action that completed, which the decision log
// would otherwise not show.
type warnLog struct{ log *slog.Logger }

func (l warnLog) Report(ev report.Event) {
	if n, ok := ev.(report.Note); ok && n.Warn {
		l.log.Warn("note", "action", n.Action, "text", n.Text)
	}
}

// both is a Reporter telling a and b (either may be nil).
func both(a, b Reporter) Reporter {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return pair{a, b}
}

type pair [2]Reporter

func (p pair) Report(ev report.Event) {
	p[0].Report(ev)
	p[1].Report(ev)
}

// stepLogOf finds the debug step log among the reporters of r.
func stepLogOf(r Reporter) *stepLog {
	switch r := r.(type) {
	case *stepLog:
		return r
	case pair:
		if st := stepLogOf(r[0]); st != nil {
			return st
		}
		return stepLogOf(r[1])
	}
	return nil
}

type stepLog struct {
	log   *slog.Logger
	start time.Time
}

// step logs an executor's step (Env.Trace).
func (s *stepLog) step(what string) {
	s.log.Debug("step", "what", what, "at_ms", time.Since(s.start).Milliseconds())
}

func (s *stepLog) Report(ev report.Event) {
	at := time.Since(s.start).Milliseconds()
	switch ev := ev.(type) {
	case report.PlanShown:
		s.log.Debug("step", "what", "planned under the lock", "actions", len(ev.Plan.Actions), "at_ms", at)
	case report.ActionDone:
		outcome := "done"
		if ev.Err != nil {
			outcome = firstLine(ev.Err.Error())
		}
		s.log.Debug("step", "what", ev.Action.ID, "took_ms", ev.Elapsed.Milliseconds(), "at_ms", at, "outcome", outcome)
	case report.Note:
		// An executor's notes carry the time of its own steps (a
		// rejoin's fork check, pg_rewind, start): where a slow action
		// spent its time.
		s.log.Debug("note", "action", ev.Action, "text", ev.Text, "at_ms", at)
	case report.Outcome:
		s.log.Debug("step", "what", "end", "at_ms", at)
	}
}

// buildOptionsNow is buildOptions for the plan Run makes under the lock;
// it cannot see that plan's observation, so it keeps the failed-over
// primary on the same terms, judged from the file and the situation.
func (w *Watcher) buildOptionsNow() plan.Options {
	c := w.Env.Cfg
	return plan.Options{NoSwitchover: c.Failover.Failback != "automatic" && !w.sit.PrimaryEdited && w.lastWritable && !w.lastIntended}
}

// logPlanned says, before they run, the decisions a plan carries out:
// a failover with its candidate and the reasons against the others, a
// restart, each rejoin and heal.
func (w *Watcher) logPlanned(op, why string, p *plan.Plan) {
	for _, a := range p.Actions {
		switch {
		case a.Kind == plan.Failover:
			w.Log.Warn("failover", "from", a.Before["primary"], "to", a.Node, "reason", why,
				"candidate", a.Reason, "reasons_against", reasonsAgainst(w.Env.Cfg, a.After["not_chosen"], a.Before["primary"], a.Node), "at_risk", a.After["at_risk"])
		case a.Kind == plan.StandbyRejoin:
			w.Log.Info("rejoin", "node", a.Node, "method", a.Params.Method, "reason", a.Reason)
		case a.Kind == plan.Switchover:
			// A resumed one finishes a switchover the catalog's intent
			// records; its reason says since when.
			w.Log.Info("switchover", "from", a.Params.From, "to", a.Node, "resume", a.Params.Resume, "reason", a.Reason)
		case op == "apply":
			w.Log.Info("heal", "action", a.ID, "reason", a.Reason)
		}
	}
}

// reasonsAgainst turns a failover's not_chosen ("db3 does not answer;
// db1 received ...") into {node: reason}. A reason may hold "; " itself,
// so an entry starts only where the name of a declared node other than
// the old primary and the chosen one does.
func reasonsAgainst(c *config.Cluster, s, from, to string) map[string]string {
	out := map[string]string{}
	last := ""
	for _, part := range strings.Split(s, "; ") {
		node, why, ok := strings.Cut(part, " ")
		if ok && c.Node(node) != nil && node != from && node != to && out[node] == "" {
			out[node], last = why, node
		} else if last != "" {
			out[last] += "; " + part
		}
	}
	return out
}

// logHeld logs what the policy holds, once per change of the held set,
// so that a held failback does not fill the log every second.
func (w *Watcher) logHeld(held []plan.Held) {
	var b strings.Builder
	for _, h := range held {
		b.WriteString(h.Action.ID + "\x00" + h.Reason + "\n")
	}
	if b.String() == w.lastHeld {
		return
	}
	w.lastHeld = b.String()
	for _, h := range held {
		w.Log.Info("held by policy", "action", h.Action.ID, "reason", h.Reason)
	}
}
