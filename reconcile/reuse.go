package reconcile

import (
	"sync"
	"time"
)

// quickReuse is how long a quick observation (the watcher's checks, the
// health checks' snapshot) may reuse a slow read instead of doing it
// again. On Docker, reading each node's installed certificate and listing
// its set-aside directories are calls into the containers: 0.6-2.5 s of
// every quick observation of three nodes under load (TestDockerHAProxy,
// debug timings), which aged the health checks' observation past their
// two intervals and took every node out of HAProxy. What these reads see
// changes through pgha's own actions (Execute forgets them) or by hand,
// which the watcher then sees within this bound; full observations
// (plan, apply) always read.
const quickReuse = 30 * time.Second

// reused keeps reads that quick observations may reuse: per key, a value
// and when it was read. The zero value is ready to use; a nil *reused
// keeps nothing (an Env made without Open).
type reused[T any] struct {
	mu    sync.Mutex
	reads map[string]reusedRead[T]
}

type reusedRead[T any] struct {
	v  T
	at time.Time
}

// get returns key's value if it was read less than quickReuse before now.
func (r *reused[T]) get(key string, now time.Time) (T, bool) {
	var zero T
	if r == nil {
		return zero, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rd, ok := r.reads[key]
	if !ok || now.Sub(rd.at) >= quickReuse {
		return zero, false
	}
	return rd.v, true
}

// put keeps v as key's value, read at at (the read's start: a read that
// took long is as old as when it began).
func (r *reused[T]) put(key string, v T, at time.Time) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reads == nil {
		r.reads = map[string]reusedRead[T]{}
	}
	r.reads[key] = reusedRead[T]{v: v, at: at}
}

// forget drops every read: an apply may have changed what they saw.
func (r *reused[T]) forget() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads = nil
}

// reusingRuntime is a Runtime that keeps reads of its own for quick
// observations (the Docker runtime's set-aside lists); Execute tells it
// to forget them.
type reusingRuntime interface {
	forgetReused()
}

// forgetReused drops every read quick observations would reuse, the
// Env's and its runtime's: the next observation reads again what an
// apply may have changed.
func (e *Env) forgetReused() {
	e.installed.forget()
	if r, ok := e.Runtime.(reusingRuntime); ok {
		r.forgetReused()
	}
}
