// Package report holds what pgha tells the people and programs watching
// it, as plain data: the events of a running operation (the plan it made,
// each action's start and end, the lines said along the way, how it
// ended) and the status of a cluster. It exists so that the engine that
// produces these (reconcile) and the renderings of them (views) both
// depend on it and not on each other: a view renders a report without
// importing the engine, its providers or their drivers, and an API or a
// watcher can forward the same values. It holds data and the errors an
// outcome carries, nothing that does I/O.
package report

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pgha/pgha/plan"
)

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
	// Warn marks what went wrong beside an action that completed all the
	// same (a history entry the catalog did not take): the watcher logs
	// these, where it drops the other notes.
	Warn bool
}

// Outcome ends every operation: Err is nil when it completed (an empty
// plan included), ErrCancelled when the operator declined, an *ApplyError
// when an action failed or the apply stopped between two, and any other
// error when it stopped before executing. Plan is nil when it stopped
// before planning, and for the operations that have no plan (backup,
// verify, restore).
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

// ErrCancelled is returned when the operator does not approve. It lives
// here, beside Outcome, because a view tells a cancelled operation from a
// failed one by it.
var ErrCancelled = errors.New("apply cancelled")

// ApplyError reports a stopped apply: what was done, what failed and what
// was not attempted, so the operator knows the next plan shows the rest.
// A view reads its fields to say the same in its own form.
type ApplyError struct {
	Done, NotAttempted []string
	Failed             string
	Err                error
}

func (e *ApplyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v\n", e.Failed, e.Err)
	fmt.Fprintf(&b, "  done:          %d %s\n", len(e.Done), list(e.Done))
	fmt.Fprintf(&b, "  failed:        1 (%s)\n", e.Failed)
	fmt.Fprintf(&b, "  not attempted: %d %s\n", len(e.NotAttempted), list(e.NotAttempted))
	b.WriteString("Run `pgha plan` to see what is left; `pgha apply` continues from there.")
	return b.String()
}

func (e *ApplyError) Unwrap() error { return e.Err }

func list(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return "(" + strings.Join(ids, ", ") + ")"
}
