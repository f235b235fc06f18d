// Package api is what `pgha watch` serves over HTTP: the control API
// (status, the pending plan, switchover, failover, failback), server-sent
// events, Prometheus metrics, the dashboard at /ui, and the health checks
// a load balancer asks each node (Patroni's /primary, /replica, ...).
//
// Everything read is answered from the Hub: the watcher's latest
// observation, kept fresh by the API's own quick observation while the
// watcher is busy acting. No request queries PostgreSQL, so that a load
// balancer checking every few hundred milliseconds costs the cluster
// nothing, and an answer is never older than one check interval.
package api

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/reconcile"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// Snapshot is one observation of the cluster as the API serves it.
type Snapshot struct {
	Cfg   *config.Cluster
	State *state.Cluster
	// At is when it was observed.
	At time.Time
	// Record is the catalog's cluster record: this observation's, or the
	// last one read while the catalog does not answer (a catalog outage
	// must not take every node out of the load balancer).
	Record *state.ClusterRecord
	// Leading: this watcher holds the leader lease.
	Leading bool
	// Verdict is the watcher's judgement of the primary.
	Verdict reconcile.Verdict
	// Own: the API observed by itself while the watcher was busy; Leading
	// and Verdict are then the watcher's last.
	Own bool
	// started is when an Own observation started (the Hub's clock).
	started time.Time
	// Unwritable: the watcher's write probe on Verdict.Node failed after
	// this observation, otherwise than by a timeout, and why ("" in an
	// Own snapshot, which probes nothing).
	Unwritable string
}

// Event is one entry of the stream /events serves and / lists: a
// decision of the watcher (its log record), an operation's progress, or
// a new observation.
type Event struct {
	Time time.Time `json:"time"`
	// Type is "log", "apply" (a line of the operation's JSON stream),
	// "operation" (an operation's end) or "status" (a new observation;
	// not kept in the list).
	Type    string          `json:"type"`
	Level   string          `json:"level,omitempty"`
	Message string          `json:"message,omitempty"`
	Attrs   map[string]any  `json:"attrs,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// LagSample is every standby's replay lag at one observation.
type LagSample struct {
	Time  time.Time        `json:"time"`
	Bytes map[string]int64 `json:"bytes"`
}

const (
	eventCap = 200
	// lagWindow is how much lag history the dashboard's chart gets.
	lagWindow = 10 * time.Minute
)

// Counters are the operations the watcher and the API ran to success,
// since this process started.
type Counters struct {
	Switchovers, Failovers int
	LastFailover           time.Time
}

// Hub holds what the API serves, and fans events out to the /events
// subscribers. It is safe for concurrent use.
type Hub struct {
	mu       sync.RWMutex
	snap     *Snapshot
	record   *state.ClusterRecord
	events   []Event
	lag      []LagSample
	counters Counters
	subs     map[chan Event]struct{}
	// watching: the watcher is observing (Observing came, Observed not
	// yet); watchStart is when its last observation started. The API's
	// own observations do not overlap the watcher's (see Observing).
	watching   bool
	watchStart time.Time
	// lost is when a node's sentinel connection ended (see Sentinel),
	// with why, until an observation started after it.
	lost map[string]lostConn
	// kick asks the refresher for an observation now (after an
	// operation, so that views show its result at once).
	kick chan struct{}
	// iteration observes the duration of each watch iteration (metrics).
	iteration func(time.Duration)
	// archive is the WAL archive receiver's last durable position, as
	// the watcher's receiver reports it (nil: none runs here).
	archive *state.ArchiveStatus
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewHub returns an empty Hub.
func NewHub() *Hub {
	return &Hub{subs: map[chan Event]struct{}{}, kick: make(chan struct{}, 1), lost: map[string]lostConn{}}
}

func (h *Hub) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// SetArchive records the WAL archive receiver's durable position (the
// receiver's Stored hook: it does not block).
func (h *Hub) SetArchive(st state.ArchiveStatus) {
	h.mu.Lock()
	h.archive = &st
	h.mu.Unlock()
}

// Archive is the receiver's last durable position; nil when none runs.
func (h *Hub) Archive() *state.ArchiveStatus {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.archive
}

// Latest is the newest snapshot, nil before the first observation.
func (h *Hub) Latest() *Snapshot {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.snap
}

// Publish installs an observation unless a newer one is already there,
// and tells the subscribers.
func (h *Hub) Publish(s *Snapshot) {
	h.mu.Lock()
	if h.snap != nil && s.At.Before(h.snap.At) {
		h.mu.Unlock()
		return
	}
	if r := s.State.Catalog.Record; r != nil {
		h.record = r
	}
	if s.Record == nil {
		s.Record = h.record
	}
	if s.Own && (h.watching || h.watchStart.After(s.started)) {
		// The watcher observed meanwhile: this observation overlapped
		// one of its, and may have read a node before it did.
		h.mu.Unlock()
		return
	}
	if !s.Own {
		h.watching = false
	}
	for node, l := range h.lost {
		if s.started.After(l.at) || (!s.Own && s.At.After(l.at)) {
			delete(h.lost, node) // observed after the loss: that says the rest
		}
	}
	if h.snap != nil && s.Own {
		s.Leading, s.Verdict, s.Unwritable = h.snap.Leading, h.snap.Verdict, h.snap.Unwritable
	}
	h.snap = s
	h.addLag(s)
	h.mu.Unlock()
	h.broadcast(Event{Time: s.At, Type: "status"})
}

// lostConn is a node's sentinel connection ended.
type lostConn struct {
	at  time.Time
	why string
}

// NodeLost records that node's sentinel connection ended at at: until an
// observation that started later says otherwise, the node's health
// checks say 503 (only a primary's PostgreSQL dying ends it on its own;
// a wrong 503 lasts until the next observation, less than one interval).
func (h *Hub) NodeLost(node string, at time.Time, why string) {
	h.mu.Lock()
	h.lost[node] = lostConn{at: at, why: why}
	h.mu.Unlock()
	h.broadcast(Event{Time: at, Type: "status"})
	h.Kick()
}

// Lost says why node's sentinel connection ended after its latest
// observation started, "" when it did not.
func (h *Hub) Lost(node string) string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.lost[node].why
}

// addLag appends the standbys' lag of s to the chart's history.
func (h *Hub) addLag(s *Snapshot) {
	st := reconcile.BuildStatus(s.Cfg, s.State)
	sample := LagSample{Time: s.At, Bytes: map[string]int64{}}
	for _, n := range st.Nodes {
		if n.LagBytes != nil && n.Role == state.RoleStandby {
			sample.Bytes[n.Name] = *n.LagBytes
		}
	}
	h.lag = append(h.lag, sample)
	cut := s.At.Add(-lagWindow)
	i := 0
	for i < len(h.lag) && h.lag[i].Time.Before(cut) {
		i++
	}
	h.lag = h.lag[i:]
}

// Lag returns the lag history, oldest first.
func (h *Hub) Lag() []LagSample {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return slices.Clone(h.lag)
}

// Add records an event and tells the subscribers.
func (h *Hub) Add(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = h.now()
	}
	h.mu.Lock()
	h.events = append(h.events, ev)
	if len(h.events) > eventCap {
		h.events = h.events[len(h.events)-eventCap:]
	}
	h.mu.Unlock()
	h.broadcast(ev)
}

// Events returns the latest events, oldest first.
func (h *Hub) Events() []Event {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return slices.Clone(h.events)
}

// Subscribe returns a channel of every event from now on; cancel ends it.
// A subscriber that does not keep up loses events rather than slowing
// the watcher.
func (h *Hub) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 64)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

func (h *Hub) broadcast(ev Event) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// Ran counts an operation's role changes: a switchover or failover that
// completed.
func (h *Hub) Ran(op string, p *plan.Plan, err error) {
	if p == nil || err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range p.Actions {
		switch a.Kind {
		case plan.Switchover:
			h.counters.Switchovers++
		case plan.Failover:
			h.counters.Failovers++
			h.counters.LastFailover = h.now()
		}
	}
}

// Counters returns the operation counters.
func (h *Hub) Counters() Counters {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.counters
}

// Kick asks for a fresh observation soon.
func (h *Hub) Kick() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// Watcher adapts the Hub to reconcile.WatchObserver.
func (h *Hub) Watcher() reconcile.WatchObserver { return watchObserver{h} }

type watchObserver struct{ h *Hub }

func (w watchObserver) Observing() {
	w.h.mu.Lock()
	w.h.watching, w.h.watchStart = true, w.h.now()
	w.h.mu.Unlock()
}

// WatcherObserving reports whether the watcher is observing now.
func (h *Hub) WatcherObserving() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.watching
}

func (w watchObserver) Observed(o reconcile.Observation) {
	w.h.Publish(&Snapshot{Cfg: o.Cfg, State: o.State, At: o.State.ObservedAt, Leading: o.Leading, Verdict: o.Verdict, Unwritable: o.Unwritable})
}

func (w watchObserver) Ran(op string, p *plan.Plan, err error) {
	w.h.Ran(op, p, err)
	w.h.Kick()
}

// Report follows the steps of the watcher's operations: once an action
// recorded a role change in the catalog, the health checks need a new
// observation now, not at the end of the operation.
func (w watchObserver) Report(ev report.Event) {
	if d, ok := ev.(report.ActionDone); ok && d.Err == nil && d.Action.Kind == plan.CatalogRecord {
		w.h.Kick()
	}
}

func (w watchObserver) Iterated(took time.Duration, _ reconcile.Outcome) {
	w.h.mu.RLock()
	f := w.h.iteration
	w.h.mu.RUnlock()
	if f != nil {
		f(took)
	}
}
