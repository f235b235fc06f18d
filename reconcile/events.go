package reconcile

import (
	"strings"
	"sync"
	"time"

	"github.com/pgha/pgha/plan"
)

// Reporter receives what an operation reports while it runs: the plan it
// made, each action's start and end, the lines executors say under an
// action, and how it ended. reconcile never prints; a view renders the
// events (views.Human prints the text operators know, views.JSON one
// object per line), and a watcher or an API can forward the same stream.
// Report is called from one goroutine at a time, in the order things
// happen.
type Reporter interface {
	Report(Event)
}

// Event is one of the types below; a view switches on them and ignores
// those it does not know, so that new events can be added.
type Event interface{ event() }

// Message is a line said outside any action: waiting for or taking over
// the lock, starting the managed catalog, bootstrapping TLS.
type Message struct{ Text string }

// PlanShown is the plan an operation made, before it is approved. A saved
// plan was shown when it was made and is not shown again.
type PlanShown struct{ Plan *plan.Plan }

// Applying says the plan was approved and its actions start now.
type Applying struct {
	Operation string
	Plan      *plan.Plan
}

// ActionStarted is reported before an action runs; Index counts from 1.
type ActionStarted struct {
	Index, Total int
	Action       plan.Action
}

// ActionDone is reported when an action ended: completed when Err is nil,
// errored otherwise (the apply then stops, see Outcome).
type ActionDone struct {
	Index, Total int
	Action       plan.Action
	Elapsed      time.Duration
	Err          error
}

// Note is a line an executor says under the running action: what it
// decided, how far a transfer is.
type Note struct {
	Action string // the running action's ID
	Text   string
}

// Outcome ends every Run: Err is nil when the operation completed (an
// empty plan included), ErrCancelled when the operator declined, an
// *ApplyError when an action failed or the apply stopped between two,
// and any other error when it stopped before executing. Plan is nil when
// it stopped before planning.
type Outcome struct {
	Operation string
	Plan      *plan.Plan
	Err       error
}

func (Message) event()       {}
func (PlanShown) event()     {}
func (Applying) event()      {}
func (ActionStarted) event() {}
func (ActionDone) event()    {}
func (Note) event()          {}
func (Outcome) event()       {}

// Discard is a Reporter that drops every event.
var Discard Reporter = discard{}

type discard struct{}

func (discard) Report(Event) {}

// lineWriter turns what is written to it into one event per line, for
// code that prints to an io.Writer (the lock, the catalog start, a
// backup's progress): each complete line becomes make(line). A line is
// reported once its newline arrives; Flush reports a last unterminated one.
type lineWriter struct {
	mu   sync.Mutex
	r    Reporter
	make func(line string) Event
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		w.r.Report(w.make(line))
	}
	return len(p), nil
}

// Flush reports what was written after the last newline, if anything.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.r.Report(w.make(string(w.buf)))
		w.buf = nil
	}
}

// messages is a writer whose lines become Message events.
func messages(r Reporter) *lineWriter {
	return &lineWriter{r: r, make: func(line string) Event { return Message{Text: line} }}
}

// notes is a writer whose lines become Note events under action.
func notes(r Reporter, action string) *lineWriter {
	return &lineWriter{r: r, make: func(line string) Event { return Note{Action: action, Text: line} }}
}

// reporter is r, or Discard when r is nil.
func reporter(r Reporter) Reporter {
	if r == nil {
		return Discard
	}
	return r
}
