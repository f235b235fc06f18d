package views

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

const (
	superSecret = "views-Super-s3cret"
	replSecret  = "views-Repl-s3cret"
)

// freshPlan is the plan of a new three-node cluster whose passwords are
// distinctive, with a warning added: it has every kind of line a plan
// shows, a role with a password among them.
func freshPlan(t *testing.T) (*config.Cluster, *plan.Plan) {
	t.Helper()
	c := &config.Cluster{
		Name: "demo", Primary: "db1", File: "/srv/pgha/cluster.hcl", Dir: "/srv/pgha", Hash: "sha256:test",
		Postgres:    config.Postgres{Superuser: "postgres", Password: config.NewSecret(superSecret)},
		Runtime:     config.Runtime{Kind: "local", DataDir: "/srv/pgha/data", RunAs: "postgres"},
		Replication: config.Replication{User: "replicator", Password: config.NewSecret(replSecret)},
	}
	s := &state.Cluster{Name: "demo"}
	for i, name := range []string{"db1", "db2", "db3"} {
		n := &config.Node{Name: name, Host: "127.0.0.1", Port: 5441 + i, Slot: name, DataDir: "/srv/pgha/data/" + name}
		c.Nodes = append(c.Nodes, n)
		s.Nodes = append(s.Nodes, &state.Node{Name: name, Host: n.Host, Port: n.Port, DataDir: n.DataDir})
	}
	p := plan.BuildWith(c, s, plan.Options{})
	if len(p.Actions) < 4 {
		t.Fatalf("the fresh plan has %d actions; the test needs a few", len(p.Actions))
	}
	p.Diagnostics = append(p.Diagnostics, plan.Diagnostic{Severity: plan.Warning, Node: "db3", Summary: "db3 is far behind", Detail: "it lags 1 GB"})
	return c, p
}

// failedApply is what Run reports for an apply whose third action
// fails: every event type, in the order Run reports them.
func failedApply(c *config.Cluster, p *plan.Plan) []report.Event {
	n := len(p.Actions)
	a0, a1, a2 := p.Actions[0], p.Actions[1], p.Actions[2]
	// An error that formats the password (by mistake) shows it redacted.
	cause := fmt.Errorf("start %s: could not bind 127.0.0.1:%d (password %v)", a2.Node, 5443, c.Postgres.Password)
	var rest []string
	for _, a := range p.Actions[3:] {
		rest = append(rest, a.ID)
	}
	return []report.Event{
		report.Message{Text: "Acquiring the cluster lock..."},
		report.PlanShown{Plan: p},
		report.Applying{Operation: "apply", Plan: p},
		report.ActionStarted{Index: 1, Total: n, Action: a0},
		report.Note{Action: a0.ID, Text: "Backing up db1 (primary) into ./backups..."},
		report.ActionDone{Index: 1, Total: n, Action: a0, Elapsed: 1234 * time.Millisecond},
		report.ActionStarted{Index: 2, Total: n, Action: a1},
		report.ActionDone{Index: 2, Total: n, Action: a1, Elapsed: 5 * time.Millisecond},
		report.ActionStarted{Index: 3, Total: n, Action: a2},
		report.ActionDone{Index: 3, Total: n, Action: a2, Elapsed: 250 * time.Millisecond, Err: cause},
		report.Outcome{Operation: "apply", Plan: p, Err: &report.ApplyError{Done: []string{a0.ID, a1.ID}, Failed: a2.ID, NotAttempted: rest, Err: cause}},
	}
}

// event is one parsed line of the stream, with the fields tests read.
type event struct {
	Level     string `json:"@level"`
	Message   string `json:"@message"`
	Module    string `json:"@module"`
	Timestamp string `json:"@timestamp"`
	Type      string `json:"type"`
	UI        string `json:"ui"`
	PGHA      string `json:"pgha"`
	Hook      *Hook  `json:"hook"`
	Change    *struct {
		Action   ActionAddr  `json:"action"`
		Change   plan.Change `json:"change"`
		Reason   string      `json:"reason"`
		DataLoss *bool       `json:"data_loss"`
	} `json:"change"`
	Changes    *Changes         `json:"changes"`
	Diagnostic *plan.Diagnostic `json:"diagnostic"`
	Outcome    *Outcome         `json:"outcome"`
	Total      int              `json:"total"`
	Operation  string           `json:"operation"`
	Raw        map[string]any   `json:"-"` // the whole line, for messages
}

// parseStream parses every line of a stream strictly: each must be one
// JSON object with the envelope every event has.
func parseStream(t *testing.T, out string, now time.Time) []event {
	t.Helper()
	var evs []event
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		dec := json.NewDecoder(bytes.NewReader(line))
		if err := dec.Decode(&e); err != nil || dec.More() {
			t.Fatalf("line %d is not one JSON object (%v): %s", len(evs)+1, err, line)
		}
		if err := json.Unmarshal(line, &e.Raw); err != nil {
			t.Fatal(err)
		}
		ts, err := time.Parse(time.RFC3339Nano, e.Timestamp)
		if e.Module != "pgha.ui" || e.Type == "" || e.Message == "" || err != nil || !ts.Equal(now) ||
			!slices.Contains([]string{"info", "warn", "error"}, e.Level) {
			t.Fatalf("line %d lacks the envelope (@level, @message, @module, @timestamp, type): %s", len(evs)+1, line)
		}
		evs = append(evs, e)
	}
	return evs
}

// TestJSONStream renders every event type of a failed apply and checks
// each line: the envelope, the version first, the fields of each type,
// the outcome last, and no secret anywhere.
func TestJSONStream(t *testing.T) {
	c, p := freshPlan(t)
	now := time.Date(2026, 12, 1, 3, 4, 5, 678901000, time.UTC)
	var buf bytes.Buffer
	v := NewJSON(&buf, "1.2.3")
	v.Now = func() time.Time { return now }
	for _, ev := range failedApply(c, p) {
		v.Report(ev)
	}
	out := buf.String()
	for _, s := range []string{superSecret, replSecret} {
		if strings.Contains(out, s) {
			t.Fatalf("the stream shows a password:\n%s", out)
		}
	}
	evs := parseStream(t, out, now)

	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	want := []string{TypeVersion, TypeLog, TypeDiagnostic}
	for range p.Actions {
		want = append(want, TypePlannedChange)
	}
	want = append(want, TypeChangeSummary, TypeApplyBegin,
		TypeApplyStart, TypeApplyNote, TypeApplyComplete, TypeApplyStart, TypeApplyComplete, TypeApplyStart, TypeApplyErrored, TypeOutcome)
	if !slices.Equal(types, want) {
		t.Fatalf("event types\n got %v\nwant %v", types, want)
	}

	if e := evs[0]; e.UI != UIVersion || e.PGHA != "1.2.3" {
		t.Errorf("version event: %+v", e.Raw)
	}
	if e := evs[1]; e.Message != "Acquiring the cluster lock..." || e.Level != "info" {
		t.Errorf("log event: %+v", e.Raw)
	}
	if d := evs[2].Diagnostic; d == nil || d.Severity != plan.Warning || d.Node != "db3" || d.Detail != "it lags 1 GB" || evs[2].Level != "warn" {
		t.Errorf("diagnostic event: %+v", evs[2].Raw)
	}
	for i, a := range p.Actions {
		ch := evs[3+i].Change
		if ch == nil || ch.Action.Addr != a.ID || ch.Action.Kind != a.Kind || ch.Change != a.Change || ch.Reason != a.Reason || ch.DataLoss == nil {
			t.Errorf("planned_change %d: %+v, want %s", i, evs[3+i].Raw, a.ID)
		}
	}
	sum := p.Summary()
	if cs := evs[3+len(p.Actions)]; cs.Changes == nil || cs.Changes.Add != sum.Add || cs.Changes.Change != sum.Change ||
		cs.Changes.Operation != "apply" || cs.Message != p.SummaryLine() {
		t.Errorf("change_summary: %+v", cs.Raw)
	}
	rest := evs[4+len(p.Actions):]
	if b := rest[0]; b.Total != len(p.Actions) || b.Operation != "apply" {
		t.Errorf("apply_begin: %+v", b.Raw)
	}
	// Every action event names its action and says its status; the end
	// of one says how long it took.
	for _, e := range rest[1 : len(rest)-1] {
		h := e.Hook
		if h == nil || h.Action.Addr == "" || h.Action.Kind == "" {
			t.Fatalf("%s without its action: %+v", e.Type, e.Raw)
		}
		switch e.Type {
		case TypeApplyStart:
			if h.Status != "started" || h.Index == 0 || h.Total != len(p.Actions) {
				t.Errorf("apply_start: %+v", e.Raw)
			}
		case TypeApplyNote:
			if h.Action.Addr != p.Actions[0].ID || h.Note == nil || *h.Note != "Backing up db1 (primary) into ./backups..." {
				t.Errorf("apply_note: %+v", e.Raw)
			}
		case TypeApplyComplete, TypeApplyErrored:
			if h.Elapsed == nil || h.Status == "" {
				t.Errorf("%s without status or elapsed_seconds: %+v", e.Type, e.Raw)
			}
		}
	}
	if h := rest[3].Hook; *h.Elapsed != 1.234 || h.Status != StatusComplete {
		t.Errorf("first apply_complete: %+v", rest[3].Raw)
	}
	errored := rest[len(rest)-2]
	if h := errored.Hook; h.Action.Addr != p.Actions[2].ID || h.Status != StatusErrored || *h.Elapsed != 0.25 ||
		!strings.Contains(h.Error, "could not bind 127.0.0.1:5443") || errored.Level != "error" {
		t.Errorf("apply_errored: %+v", errored.Raw)
	}
	last := evs[len(evs)-1]
	o := last.Outcome
	if o == nil || last.Level != "error" || o.Status != StatusErrored || o.Failed != p.Actions[2].ID ||
		!slices.Equal(o.Done, []string{p.Actions[0].ID, p.Actions[1].ID}) || len(o.NotAttempted) != len(p.Actions)-3 ||
		!strings.Contains(o.Error, "could not bind") || !strings.HasPrefix(last.Message, "Error: "+p.Actions[2].ID+": ") {
		t.Fatalf("outcome: %+v", last.Raw)
	}
	var done plan.Plan
	done.Actions = p.Actions[:2]
	if s := done.Summary(); o.Changes.Add != s.Add || o.Changes.Change != s.Change || o.Changes.Destroy != s.Destroy {
		t.Errorf("outcome counts %+v, want those of the two done actions %+v", o.Changes, s)
	}
}

// TestJSONOutcomes: a completed apply, an empty plan, a declined one and
// one that failed before planning each end with an outcome saying so.
func TestJSONOutcomes(t *testing.T) {
	_, p := freshPlan(t)
	sum := p.Summary()
	for _, tc := range []struct {
		name   string
		ev     report.Outcome
		status string
		level  string
		msg    string
		done   int
	}{
		{"complete", report.Outcome{Operation: "apply", Plan: p}, StatusComplete, "info",
			fmt.Sprintf("Apply complete! Actions: %d added, %d changed, %d destroyed.", sum.Add, sum.Change, sum.Destroy), len(p.Actions)},
		{"no changes", report.Outcome{Operation: "destroy", Plan: &plan.Plan{Operation: "destroy"}}, StatusComplete, "info",
			"No changes. Nothing of this cluster is left to destroy.", 0},
		{"cancelled", report.Outcome{Operation: "failover", Plan: p, Err: report.ErrCancelled}, StatusCancelled, "info", "Failover cancelled.", 0},
		{"before planning", report.Outcome{Operation: "apply", Err: errors.New("acquire the cluster lock: held by x")}, StatusErrored, "error",
			"Error: acquire the cluster lock: held by x", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now().Truncate(time.Microsecond) // the precision of @timestamp
			var buf bytes.Buffer
			v := NewJSON(&buf, "dev")
			v.Now = func() time.Time { return now }
			v.Report(tc.ev)
			evs := parseStream(t, buf.String(), now)
			if len(evs) != 2 || evs[0].Type != TypeVersion || evs[1].Type != TypeOutcome {
				t.Fatalf("stream:\n%s", buf.String())
			}
			e := evs[1]
			if o := e.Outcome; o.Status != tc.status || e.Level != tc.level || e.Message != tc.msg || len(o.Done) != tc.done ||
				o.Operation != tc.ev.Operation || o.Done == nil || o.NotAttempted == nil || (tc.ev.Err != nil) != (o.Error != "") {
				t.Fatalf("outcome: %s", buf.String())
			}
		})
	}
}

// TestHumanEvents: the text view prints what pgha printed before views
// existed, byte for byte (e2e tests and scripts grep these lines).
func TestHumanEvents(t *testing.T) {
	c, p := freshPlan(t)
	var buf bytes.Buffer
	h := NewHuman(&buf)
	for _, ev := range failedApply(c, p) {
		h.Report(ev)
	}
	var text bytes.Buffer
	plan.Text(&text, p)
	n := len(p.Actions)
	want := "Acquiring the cluster lock...\n" + text.String() + "\n" +
		fmt.Sprintf("      Backing up db1 (primary) into ./backups...\n[1/%d] %s %s: done in 1.234s\n", n, p.Actions[0].Change.Symbol(), p.Actions[0].ID) +
		fmt.Sprintf("[2/%d] %s %s: done in 5ms\n", n, p.Actions[1].Change.Symbol(), p.Actions[1].ID) +
		fmt.Sprintf("[3/%d] %s %s: failed after 250ms\n", n, p.Actions[2].Change.Symbol(), p.Actions[2].ID)
	if buf.String() != want {
		t.Fatalf("human events\n got %q\nwant %q", buf.String(), want)
	}
	buf.Reset()
	h.Report(report.Outcome{Operation: "destroy", Plan: p})
	s := p.Summary()
	if want := fmt.Sprintf("\nDestroy complete! Actions: %d added, %d changed, %d destroyed.\n", s.Add, s.Change, s.Destroy); buf.String() != want {
		t.Fatalf("outcome %q, want %q", buf.String(), want)
	}
	buf.Reset()
	h.Report(report.Outcome{Operation: "apply", Plan: &plan.Plan{}})
	if buf.Len() != 0 {
		t.Fatalf("an empty plan's outcome printed %q: the plan already said No changes", buf.String())
	}
}
