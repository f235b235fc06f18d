package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/reconcile"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
	"github.com/pgha/pgha/views"
)

// StatusBody is GET /: `pgha status -json`'s object, plus the catalog
// record, the watcher's view and the latest events.
type StatusBody struct {
	report.Status
	AgeMS   int64                `json:"age_ms"`
	Record  *state.ClusterRecord `json:"record"`
	Leading bool                 `json:"leading"`
	// Primary is the watcher's verdict on the primary.
	Primary PrimaryVerdict `json:"primary"`
	Events  []Event        `json:"events"`
	Version string         `json:"version"`
}

// PrimaryVerdict is reconcile.Verdict for people and scripts.
type PrimaryVerdict struct {
	Node      string `json:"node"`
	Status    string `json:"status"` // healthy | suspect | lost
	Failures  int    `json:"failures"`
	Threshold int    `json:"threshold"`
	Reason    string `json:"reason,omitempty"`
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	snap := s.Hub.Latest()
	if snap == nil {
		writeError(w, http.StatusServiceUnavailable, "no observation yet")
		return
	}
	v := snap.Verdict
	pv := PrimaryVerdict{Node: v.Node, Status: "healthy", Failures: v.Failures, Threshold: v.Threshold, Reason: v.Reason}
	switch {
	case v.Lost:
		pv.Status = "lost"
	case v.Suspect:
		pv.Status = "suspect"
	}
	body := StatusBody{Status: reconcile.BuildStatus(snap.Cfg, snap.State), AgeMS: s.Hub.now().Sub(snap.At).Milliseconds(),
		Record: snap.Record, Leading: snap.Leading, Primary: pv, Events: s.Hub.Events(), Version: s.Version}
	if body.Events == nil {
		body.Events = []Event{}
	}
	writeJSON(w, http.StatusOK, body)
}

// getPlan is the pending plan, `pgha plan -json`, made from a full
// observation (a plan is read by a person, who can wait for it):
// ?operation=failover or failback previews those, with failover's ?to=
// and ?force=true.
func (s *Server) getPlan(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("view") == "watch" {
		s.getWatchPlan(w, r)
		return
	}
	o := reconcile.PlanOptions{Operation: q.Get("operation")}
	switch o.Operation {
	case "", "apply", "failback":
	case "failover":
		o.Failover = plan.FailoverOptions{To: q.Get("to"), Force: q.Get("force") == "true"}
	case "switchover":
		c, err := switchoverCfg(s.Cfg(), q.Get("to"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.withEnv(w, c, func(env *reconcile.Env) {
			p, err := env.Plan(r.Context(), reconcile.PlanOptions{})
			s.writePlan(w, p, err, func(p *plan.Plan) *plan.Plan { return switchoverOnly(p) })
		})
		return
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("operation is apply, switchover, failover or failback, not %q", o.Operation))
		return
	}
	s.withEnv(w, s.Cfg(), func(env *reconcile.Env) {
		p, err := env.Plan(r.Context(), o)
		s.writePlan(w, p, err, nil)
	})
}

// HeldAction is an action of the pending plan that the watch policy
// holds for `pgha apply`, and the rule that holds it.
type HeldAction struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// getWatchPlan is GET /plan?view=watch: the plan `pgha watch` makes now
// (a failed-over primary kept unless failback is automatic), in the
// `plan -json` format with one more member, "held": the actions its
// policy leaves for `pgha apply`, with the reasons. The dashboard shows
// it as what the cluster will do next.
func (s *Server) getWatchPlan(w http.ResponseWriter, r *http.Request) {
	s.withEnv(w, s.Cfg(), func(env *reconcile.Env) {
		p, _, held := reconcile.WatchPlan(env.Cfg, env.Observe(r.Context()))
		b, err := plan.JSON(p)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		hs := make([]HeldAction, 0, len(held))
		for _, h := range held {
			hs = append(hs, HeldAction{ID: h.Action.ID, Reason: h.Reason})
		}
		obj["held"], _ = json.Marshal(hs)
		writeJSON(w, http.StatusOK, obj)
	})
}

func (s *Server) writePlan(w http.ResponseWriter, p *plan.Plan, err error, filter func(*plan.Plan) *plan.Plan) {
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	if filter != nil {
		p = filter(p)
	}
	b, err := plan.JSON(p)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}

// withEnv opens the providers of c for one request.
func (s *Server) withEnv(w http.ResponseWriter, c *config.Cluster, f func(env *reconcile.Env)) {
	env, err := reconcile.Open(c)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	defer env.Close()
	env.Actor = "pgha api"
	f(env)
}

func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	s.withEnv(w, s.Cfg(), func(env *reconcile.Env) {
		if env.Catalog == nil {
			writeJSON(w, http.StatusOK, []any{})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), reconcile.ObserveTimeout)
		defer cancel()
		h, err := env.Catalog.History(ctx, 200)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, h)
	})
}

// getBackups lists the backups, newest first, as `pgha backup list -json`
// does: the catalog's records, else the repository's.
func (s *Server) getBackups(w http.ResponseWriter, r *http.Request) {
	snap := s.Hub.Latest()
	if snap == nil {
		writeError(w, http.StatusServiceUnavailable, "no observation yet")
		return
	}
	list, source := snap.State.Catalog.Backups, "catalog"
	if len(list) == 0 {
		list, source = snap.State.Backups, "repository"
	}
	var b bytes.Buffer
	if err := views.NewJSON(&b, s.Version).Backups(list, source, nil); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b.Bytes())
}

func (s *Server) getLag(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Hub.Lag())
}

// getEvents streams events as server-sent events: each a JSON Event,
// with its type as the SSE event name; a comment every 15 s keeps
// proxies from closing an idle stream.
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	ch, cancel := s.Hub.Subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": pgha events\n\n")
	fl.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ping.C:
			fmt.Fprint(w, ": ping\n\n")
		case ev := <-ch:
			b, err := json.Marshal(ev)
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, b)
		}
		fl.Flush()
	}
}

// OpResult is the answer to a POST: the plan that ran and its outcome.
type OpResult struct {
	Operation string          `json:"operation"`
	Outcome   string          `json:"outcome"` // complete | no changes | errored
	Error     string          `json:"error,omitempty"`
	Plan      json.RawMessage `json:"plan,omitempty"`
}

type opRequest struct {
	To    string `json:"to"`
	Force bool   `json:"force"`
}

func readOp(r *http.Request) (opRequest, error) {
	var o opRequest
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		return o, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return o, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return o, fmt.Errorf("the body is a JSON object such as {\"to\": \"db2\"}: %w", err)
	}
	return o, nil
}

func (s *Server) postFailover(w http.ResponseWriter, r *http.Request) {
	o, err := readOp(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if o.To != "" && s.Cfg().Node(o.To) == nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a node of the cluster", o.To))
		return
	}
	s.run(w, r, "failover", s.Cfg(), reconcile.RunOptions{PlanOptions: reconcile.PlanOptions{Operation: "failover", Failover: plan.FailoverOptions{To: o.To, Force: o.Force}}})
}

func (s *Server) postFailback(w http.ResponseWriter, r *http.Request) {
	if _, err := readOp(r); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.run(w, r, "failback", s.Cfg(), reconcile.RunOptions{PlanOptions: reconcile.PlanOptions{Operation: "failback"}})
}

// postSwitchover hands the primary role to {"to"} with the plan's
// switchover (clean stop, the target caught up, promotion: nothing is
// lost), as an edit of primary in cluster.hcl would, without the edit.
// With failback = "automatic" the watcher would switch straight back to
// the file's primary, so that is refused: edit the file instead.
func (s *Server) postSwitchover(w http.ResponseWriter, r *http.Request) {
	o, err := readOp(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c, err := switchoverCfg(s.Cfg(), o.To)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if base := s.Cfg(); base.Failover.Failback == "automatic" && o.To != base.Primary {
		writeError(w, http.StatusConflict, fmt.Sprintf("cluster.hcl declares %s primary with failback = \"automatic\": the watcher would switch back at once. Edit primary in cluster.hcl instead.", base.Primary))
		return
	}
	s.run(w, r, "switchover", c, reconcile.RunOptions{PlanOptions: reconcile.PlanOptions{Operation: "apply"}, Filter: switchoverOnly})
}

// switchoverCfg is c with to as its primary.
func switchoverCfg(c *config.Cluster, to string) (*config.Cluster, error) {
	if to == "" {
		return nil, errors.New(`say which node becomes the primary: {"to": "db2"}`)
	}
	if c.Node(to) == nil {
		return nil, fmt.Errorf("%q is not a node of the cluster", to)
	}
	cc := *c
	cc.Primary = to
	return &cc, nil
}

// switchoverOnly keeps, of an apply plan, the switchover, what it
// depends on, and what depends on it (the old primary following the new
// one, the standbys re-pointed, the record): the call asks for a role
// change, not for healing whatever else the plan holds.
func switchoverOnly(p *plan.Plan) *plan.Plan {
	return plan.Subset(p, func(a plan.Action) bool { return a.Kind == plan.Switchover }, true)
}

// run executes one operation (op names it: a switchover runs as an
// apply of the file with another primary) with the CLI's engine and
// lock; the lock held (by the watcher or a person's apply) is a 409. Its
// progress goes to /events as the JSON stream `pgha apply -json` writes.
func (s *Server) run(w http.ResponseWriter, r *http.Request, op string, c *config.Cluster, o reconcile.RunOptions) {
	if !s.opMu.TryLock() {
		writeError(w, http.StatusConflict, "another operation from the API is running")
		return
	}
	defer s.opMu.Unlock()
	s.Log.Info("api operation", "operation", op, "remote", r.RemoteAddr)
	s.withEnv(w, c, func(env *reconcile.Env) {
		lw := &lineWriter{hub: s.Hub}
		o.Events = kickOnRecord{views.NewJSON(lw, s.Version), s.Hub}
		// The operation goes on if the client goes away: stopping a
		// failover half-way helps nobody. It ends with the watcher
		// (SIGTERM), as the CLI's does, at its next safe point.
		ctx := s.base
		if ctx == nil {
			ctx = context.WithoutCancel(r.Context())
		}
		p, err := env.Run(ctx, o)
		lw.flush()
		s.answer(w, op, p, err)
	})
}

// answer records an operation's end (counters, /events, the log) and
// answers the POST with the plan that ran and its outcome.
func (s *Server) answer(w http.ResponseWriter, op string, p *plan.Plan, err error) {
	s.Hub.Ran(op, p, err)
	s.Hub.Kick()
	res := OpResult{Operation: op, Outcome: "complete"}
	if p != nil {
		if b, jerr := plan.JSON(p); jerr == nil {
			res.Plan = b
		}
		if p.Empty() && err == nil {
			res.Outcome = "no changes"
		}
	}
	code := http.StatusOK
	if err != nil {
		res.Outcome, res.Error = "errored", err.Error()
		// 409: the lock is held, or no plan could be made from the
		// cluster as it is (a failover while the primary answers, without
		// force); 500: an action failed.
		code = http.StatusInternalServerError
		if errors.Is(err, reconcile.ErrLockBusy) || p == nil {
			code = http.StatusConflict
		}
	}
	s.Hub.Add(Event{Type: "operation", Level: levelOf(err), Message: op + " " + res.Outcome, Attrs: map[string]any{"operation": op, "outcome": res.Outcome, "error": res.Error}})
	s.Log.Info("api operation", "operation", op, "outcome", res.Outcome, "actions", actionIDs(p))
	writeJSON(w, code, res)
}

func levelOf(err error) string {
	if err != nil {
		return "error"
	}
	return "info"
}

func actionIDs(p *plan.Plan) []string {
	if p == nil {
		return nil
	}
	var ids []string
	for _, a := range p.Actions {
		ids = append(ids, a.ID)
	}
	return ids
}

// kickOnRecord passes an operation's events on, and asks for a new
// observation once it recorded a role change, so that the health checks
// and the dashboard see the new primary before the operation ends.
type kickOnRecord struct {
	next reconcile.Reporter
	hub  *Hub
}

func (k kickOnRecord) Report(ev report.Event) {
	k.next.Report(ev)
	watchObserver{k.hub}.Report(ev)
}

// lineWriter turns the lines of an operation's JSON stream into "apply"
// events.
type lineWriter struct {
	hub *Hub
	buf []byte
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		l.emit(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

func (l *lineWriter) flush() {
	if len(bytes.TrimSpace(l.buf)) > 0 {
		l.emit(l.buf)
	}
	l.buf = nil
}

func (l *lineWriter) emit(line []byte) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || !json.Valid(line) {
		return
	}
	var m struct {
		Message string `json:"@message"`
		Level   string `json:"@level"`
	}
	_ = json.Unmarshal(line, &m)
	l.hub.Add(Event{Type: "apply", Level: m.Level, Message: m.Message, Data: slices.Clone(line)})
}
