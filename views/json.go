package views

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// UIVersion is the version of the event stream `pgha apply -json` writes
// (README, "JSON event stream"), named in its first line. Additive
// changes (a field, an event type, a status) keep the major number;
// anything else raises it.
const UIVersion = "1.0"

// Event types of the stream.
const (
	TypeVersion       = "version"         // the first line
	TypeLog           = "log"             // a line outside any action: lock, catalog, TLS
	TypeDiagnostic    = "diagnostic"      // a warning or critical finding of the plan
	TypePlannedChange = "planned_change"  // one per action of the plan made
	TypeChangeSummary = "change_summary"  // the plan's summary line
	TypeApplyBegin    = "apply_begin"     // approved: the actions start
	TypeApplyStart    = "apply_start"     // an action started
	TypeApplyNote     = "apply_note"      // a line an executor said under an action
	TypeApplyComplete = "apply_complete"  // an action completed
	TypeApplyErrored  = "apply_errored"   // an action failed; the outcome follows
	TypeBackupDone    = "backup_complete" // `pgha backup` stored its backup; the outcome follows
	TypeOutcome       = "outcome"         // the last line, always
)

// Outcome statuses.
const (
	StatusComplete  = "complete"
	StatusErrored   = "errored"
	StatusCancelled = "cancelled"
)

// JSON renders for programs. A plan, a status and a backup list are one
// indented object each (the contracts in README); the events of a running
// operation are a stream of one compact object per line, in the shape of
// `terraform apply -json`: @level, @message (what the text view says),
// @module, @timestamp and type, then a field per type. The first line of
// a stream is a version event, the last an outcome.
type JSON struct {
	mu      sync.Mutex
	w       io.Writer
	version string
	started bool
	running plan.Action // the action notes are said under
	// Now is the clock of @timestamp; nil is time.Now. Tests fix it.
	Now func() time.Time
}

// NewJSON returns the JSON view writing to w; version is pgha's.
func NewJSON(w io.Writer, version string) *JSON { return &JSON{w: w, version: version} }

// Plan prints the JSON plan (plan.JSON, format_version 1.x).
func (j *JSON) Plan(p *plan.Plan) error {
	b, err := plan.JSON(p)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(j.w, string(b))
	return err
}

// PlanSaved prints nothing: the JSON plan is the whole output.
func (j *JSON) PlanSaved(string, string) {}

// Status prints the status object.
func (j *JSON) Status(st report.Status) error { return j.indented(st) }

// Backups prints {"source": ..., "backups": [...], "recoverable": [...]},
// recoverable left out without a WAL archive.
func (j *JSON) Backups(list []state.Backup, source string, windows []state.RecoveryWindow) error {
	out := map[string]any{"source": source, "backups": list}
	if len(windows) > 0 {
		out["recoverable"] = windows
	}
	return j.indented(out)
}

func (j *JSON) indented(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(j.w, string(b))
	return err
}

// ActionAddr names an action in the stream: addr is its ID, the address
// plans, errors and the text view use.
type ActionAddr struct {
	Addr   string    `json:"addr"`
	Kind   plan.Kind `json:"kind,omitempty"`
	Node   string    `json:"node,omitempty"`
	Target string    `json:"target,omitempty"`
}

func addr(a plan.Action) ActionAddr {
	return ActionAddr{Addr: a.ID, Kind: a.Kind, Node: a.Node, Target: a.Target}
}

// Hook is the body of the apply_* events: which action, what it changes,
// where it is in the plan, and how it went.
type Hook struct {
	Action ActionAddr  `json:"action"`
	Change plan.Change `json:"change,omitempty"`
	Index  int         `json:"index,omitempty"`
	Total  int         `json:"total,omitempty"`
	// Status is "started", "complete" or "errored"; empty on a note.
	Status  string   `json:"status,omitempty"`
	Elapsed *float64 `json:"elapsed_seconds,omitempty"`
	Error   string   `json:"error,omitempty"`
	Note    *string  `json:"note,omitempty"`
}

// PlannedChange is the body of a planned_change event.
type PlannedChange struct {
	Action   ActionAddr  `json:"action"`
	Change   plan.Change `json:"change"`
	Reason   string      `json:"reason"`
	DataLoss bool        `json:"data_loss"`
}

// Changes counts actions as the plan's summary does.
type Changes struct {
	Add       int    `json:"add"`
	Change    int    `json:"change"`
	Destroy   int    `json:"destroy"`
	Operation string `json:"operation"`
}

// Outcome is the body of the last event: how the operation ended.
type Outcome struct {
	Operation string `json:"operation"`
	Status    string `json:"status"`
	// Changes counts the actions that completed.
	Changes      Changes  `json:"changes"`
	Done         []string `json:"done"`
	Failed       string   `json:"failed,omitempty"`
	NotAttempted []string `json:"not_attempted"`
	Error        string   `json:"error,omitempty"`
}

// BackupDone is the body of a backup_complete event: the backup stored,
// with the fields `backup list -json` names the same way, and how long it
// took. The rest of its record (LSNs, the server's manifest) is in
// `backup list -json`.
type BackupDone struct {
	ID            string  `json:"id"`
	Type          string  `json:"type"`
	Method        string  `json:"method"`
	Parent        string  `json:"parent,omitempty"`
	Node          string  `json:"node"`
	DatabaseBytes int64   `json:"database_bytes"`
	StoredBytes   int64   `json:"stored_bytes"`
	Compression   string  `json:"compression"`
	Checksum      string  `json:"checksum"`
	Path          string  `json:"path"`
	Elapsed       float64 `json:"elapsed_seconds"`
}

// Report writes the event as one line (a plan shown is several: its
// diagnostics, one planned_change per action, and its change_summary).
func (j *JSON) Report(ev report.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.started {
		j.started = true
		j.line("info", "pgha "+j.version, TypeVersion, map[string]any{"pgha": j.version, "ui": UIVersion})
	}
	switch ev := ev.(type) {
	case report.Message:
		j.line("info", ev.Text, TypeLog, nil)
	case report.PlanShown:
		p := ev.Plan
		for _, d := range p.Diagnostics {
			level, label := "warn", "Warning"
			if d.Severity == plan.Critical {
				level, label = "error", "Critical"
			}
			j.line(level, label+": "+d.Summary, TypeDiagnostic, map[string]any{"diagnostic": d})
		}
		for _, a := range p.Actions {
			j.line("info", fmt.Sprintf("%s %s: %s", a.Change.Symbol(), a.ID, a.Reason), TypePlannedChange,
				map[string]any{"change": PlannedChange{Action: addr(a), Change: a.Change, Reason: a.Reason, DataLoss: a.DataLoss}})
		}
		s := p.Summary()
		j.line("info", p.SummaryLine(), TypeChangeSummary,
			map[string]any{"changes": Changes{Add: s.Add, Change: s.Change, Destroy: s.Destroy, Operation: p.Operation}})
	case report.Applying:
		j.line("info", fmt.Sprintf("%s: %d actions", title(ev.Operation), len(ev.Plan.Actions)), TypeApplyBegin,
			map[string]any{"operation": ev.Operation, "total": len(ev.Plan.Actions)})
	case report.ActionStarted:
		j.running = ev.Action
		j.line("info", fmt.Sprintf("%s: started [%d/%d]", ev.Action.ID, ev.Index, ev.Total), TypeApplyStart,
			map[string]any{"hook": Hook{Action: addr(ev.Action), Change: ev.Action.Change, Index: ev.Index, Total: ev.Total, Status: "started"}})
	case report.Note:
		text, a := ev.Text, ActionAddr{Addr: ev.Action}
		if j.running.ID == ev.Action {
			a = addr(j.running)
		}
		j.line("info", ev.Action+": "+text, TypeApplyNote, map[string]any{"hook": Hook{Action: a, Note: &text}})
	case report.ActionDone:
		secs := float64(ev.Elapsed.Milliseconds()) / 1000 // as precise as the text view
		h := Hook{Action: addr(ev.Action), Change: ev.Action.Change, Index: ev.Index, Total: ev.Total, Status: StatusComplete, Elapsed: &secs}
		if ev.Err != nil {
			h.Status, h.Error = StatusErrored, ev.Err.Error()
			j.line("error", fmt.Sprintf("%s: failed after %s: %s", ev.Action.ID, ev.Elapsed, firstLine(h.Error)), TypeApplyErrored, map[string]any{"hook": h})
			return
		}
		j.line("info", fmt.Sprintf("%s: done in %s", ev.Action.ID, ev.Elapsed), TypeApplyComplete, map[string]any{"hook": h})
	case report.BackupDone:
		b := ev.Backup
		j.line("info", ev.Summary(), TypeBackupDone, map[string]any{"backup": BackupDone{ID: b.ID, Type: b.Type, Method: b.Method, Parent: b.Parent,
			Node: b.Node, DatabaseBytes: b.DatabaseBytes, StoredBytes: b.StoredBytes, Compression: b.Compression, Checksum: b.Checksum, Path: b.Path,
			Elapsed: float64(ev.Elapsed.Milliseconds()) / 1000}})
	case report.Outcome:
		o, level, msg := outcome(ev)
		j.line(level, msg, TypeOutcome, map[string]any{"outcome": o})
	}
}

// outcome sums up how an operation ended, with its level and message.
func outcome(ev report.Outcome) (Outcome, string, string) {
	o := Outcome{Operation: ev.Operation, Status: StatusComplete, Done: []string{}, NotAttempted: []string{}}
	o.Changes.Operation = ev.Operation
	var ae *report.ApplyError
	switch {
	case ev.Err == nil:
		if ev.Plan != nil {
			for _, a := range ev.Plan.Actions {
				o.Done = append(o.Done, a.ID)
			}
		}
	case errors.As(ev.Err, &ae):
		o.Status, o.Error = StatusErrored, ae.Err.Error()
		o.Done, o.Failed = append(o.Done, ae.Done...), ae.Failed
		o.NotAttempted = append(o.NotAttempted, ae.NotAttempted...)
	case errors.Is(ev.Err, report.ErrCancelled):
		o.Status, o.Error = StatusCancelled, ev.Err.Error()
	default:
		o.Status, o.Error = StatusErrored, ev.Err.Error()
	}
	if ev.Plan != nil {
		done := map[string]bool{}
		for _, id := range o.Done {
			done[id] = true
		}
		var p plan.Plan
		for _, a := range ev.Plan.Actions {
			if done[a.ID] {
				p.Actions = append(p.Actions, a)
			}
		}
		s := p.Summary()
		o.Changes.Add, o.Changes.Change, o.Changes.Destroy = s.Add, s.Change, s.Destroy
	}
	switch {
	case o.Status == StatusCancelled:
		return o, "info", title(ev.Operation) + " cancelled."
	case ev.Err != nil:
		return o, "error", "Error: " + firstLine(ev.Err.Error())
	case ev.Plan == nil:
		// An operation without a plan: `pgha backup`.
		return o, "info", title(ev.Operation) + " complete."
	case ev.Plan.Empty():
		return o, "info", ev.Plan.SummaryLine()
	}
	return o, "info", fmt.Sprintf("%s complete! Actions: %d added, %d changed, %d destroyed.", title(ev.Operation), o.Changes.Add, o.Changes.Change, o.Changes.Destroy)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// line writes one event: the envelope Terraform's machine-readable UI
// uses, then the fields of its type.
func (j *JSON) line(level, message, typ string, fields map[string]any) {
	now := time.Now
	if j.Now != nil {
		now = j.Now
	}
	m := map[string]any{
		"@level":     level,
		"@message":   message,
		"@module":    "pgha.ui",
		"@timestamp": now().UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		"type":       typ,
	}
	for k, v := range fields {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		// Every field is plain data; this cannot happen, but a stream
		// must stay parseable if it does.
		b, _ = json.Marshal(map[string]any{"@level": "error", "@message": "pgha: encode event: " + err.Error(), "@module": "pgha.ui",
			"@timestamp": now().UTC().Format("2006-01-02T15:04:05.000000Z07:00"), "type": TypeLog})
	}
	fmt.Fprintln(j.w, string(b))
}
