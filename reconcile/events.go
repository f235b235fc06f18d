package reconcile

import (
	"strings"
	"sync"

	"github.com/pgha/pgha/report"
)

// Reporter receives what an operation reports while it runs: the plan it
// made, each action's start and end, the lines executors say under an
// action, and how it ended. reconcile never prints; a view renders the
// events (views.Human prints the text operators know, views.JSON one
// object per line), and a watcher or an API can forward the same stream.
// Report is called from one goroutine at a time, in the order things
// happen.
//
// The events are package report's, which views import too; the interface
// is declared here, where it is called, and not beside the events: a view
// satisfies it by having the method, and report stays data that neither
// calls nor is called.
type Reporter interface {
	Report(report.Event)
}

// Discard is a Reporter that drops every event.
var Discard Reporter = discard{}

type discard struct{}

func (discard) Report(report.Event) {}

// lineWriter turns what is written to it into one event per line, for
// code that prints to an io.Writer (the lock, the catalog start, a
// backup's progress): each complete line becomes make(line). A line is
// reported once its newline arrives; Flush reports a last unterminated one.
type lineWriter struct {
	mu   sync.Mutex
	r    Reporter
	make func(line string) report.Event
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
	return &lineWriter{r: r, make: func(line string) report.Event { return report.Message{Text: line} }}
}

// notes is a writer whose lines become Note events under action.
func notes(r Reporter, action string) *lineWriter {
	return &lineWriter{r: r, make: func(line string) report.Event { return report.Note{Action: action, Text: line} }}
}

// reporter is r, or Discard when r is nil.
func reporter(r Reporter) Reporter {
	if r == nil {
		return Discard
	}
	return r
}
