package reconcile

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/report"
)

// eventLog records what an operation reports.
type eventLog []report.Event

func (l *eventLog) Report(e report.Event) { *l = append(*l, e) }

// TestLineWriter: what executors print becomes one event per line, in
// order, a line split across writes included; an unterminated last line
// waits for Flush.
func TestLineWriter(t *testing.T) {
	var got eventLog
	w := notes(&got, "backup.take[db1]")
	for _, s := range []string{"Backing up db1", " (primary)...\n  1 MiB", ", 2 MiB/s\n\nBackup ", "done"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	want := eventLog{
		report.Note{Action: "backup.take[db1]", Text: "Backing up db1 (primary)..."},
		report.Note{Action: "backup.take[db1]", Text: "  1 MiB, 2 MiB/s"},
		report.Note{Action: "backup.take[db1]", Text: ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("before Flush: %#v, want %#v", got, want)
	}
	w.Flush()
	want = append(want, report.Note{Action: "backup.take[db1]", Text: "Backup done"})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after Flush: %#v, want %#v", got, want)
	}
	var msgs eventLog
	_, _ = messages(&msgs).Write([]byte("Acquiring the cluster lock...\n"))
	if !reflect.DeepEqual(msgs, eventLog{report.Message{Text: "Acquiring the cluster lock..."}}) {
		t.Fatalf("messages: %#v", msgs)
	}
}

// TestRunReports: Run reports, in order, the plan it made, that it
// applies it, each action's start and end (a note only between them),
// and last its Outcome, which carries the error Run returned. A failed
// action is the last one reported; the Outcome names what was not
// attempted.
func TestRunReports(t *testing.T) {
	e, c := fakeEnv(t, "db1", "", nil)
	c.runAs("db1")
	c.nodes["db2"].running = false
	c.fail["Start db2"] = errScripted
	var got eventLog
	p, err := e.Run(context.Background(), RunOptions{Events: &got})
	var ae *report.ApplyError
	if !errors.As(err, &ae) || !errors.Is(err, errScripted) || ae.Failed != "node.start[db2]" {
		t.Fatalf("Run: %v, want node.start[db2] failed", err)
	}
	if len(got) < 5 {
		t.Fatalf("events: %#v", got)
	}
	if ps, ok := got[0].(report.PlanShown); !ok || ps.Plan != p {
		t.Fatalf("first event %#v, want the plan Run returned", got[0])
	}
	if ap, ok := got[1].(report.Applying); !ok || ap.Plan != p || ap.Operation != "apply" {
		t.Fatalf("second event %#v, want Applying", got[1])
	}
	o, ok := got[len(got)-1].(report.Outcome)
	if !ok || o.Err != err || o.Plan != p || o.Operation != "apply" {
		t.Fatalf("last event %#v, want the Outcome of Run's error", got[len(got)-1])
	}
	running, index := "", 0
	var failed *report.ActionDone
	for _, ev := range got[2 : len(got)-1] {
		if failed != nil {
			t.Fatalf("%#v reported after the failed action", ev)
		}
		switch ev := ev.(type) {
		case report.ActionStarted:
			index++
			if running != "" || ev.Index != index || ev.Total != len(p.Actions) || ev.Action.ID != p.Actions[index-1].ID {
				t.Fatalf("start %#v: want action %d of %d, none running (%q)", ev, index, len(p.Actions), running)
			}
			running = ev.Action.ID
		case report.Note:
			if ev.Action != running || running == "" {
				t.Fatalf("note %#v outside its action (running %q)", ev, running)
			}
		case report.ActionDone:
			if ev.Action.ID != running || ev.Index != index {
				t.Fatalf("end %#v of an action that did not start (running %q)", ev, running)
			}
			running = ""
			if ev.Err != nil {
				failed = &ev
			}
		default:
			t.Fatalf("unexpected event %#v while executing", ev)
		}
	}
	if failed == nil || failed.Action.ID != "node.start[db2]" || !errors.Is(failed.Err, errScripted) {
		t.Fatalf("the failed action was not reported: %#v", failed)
	}
	if want := len(p.Actions) - index; len(ae.NotAttempted) != want {
		t.Fatalf("not attempted %v, want the %d actions after the failed one", ae.NotAttempted, want)
	}
}

// TestPlanOperations: Env.Plan, the one place that chooses the builder,
// makes the plan of each operation and refuses one it does not know.
func TestPlanOperations(t *testing.T) {
	e, c := fakeEnv(t, "db1", "", nil)
	c.runAs("db1")
	for _, tc := range []struct{ op, want string }{
		{"", "apply"}, {"apply", "apply"}, {"failback", "apply"}, {"destroy", "destroy"},
	} {
		p, err := e.Plan(context.Background(), PlanOptions{Operation: tc.op})
		if err != nil || p.Operation != tc.want {
			t.Fatalf("Plan(%q): %v, operation %q, want %q", tc.op, err, p.Operation, tc.want)
		}
		if tc.op == "destroy" && len(p.Actions) == 0 {
			t.Fatal("the destroy plan of a running cluster destroys nothing")
		}
	}
	// A failover plan, with db1 lost: it promotes a standby.
	c.nodes["db1"].running = false
	p, err := e.Plan(context.Background(), PlanOptions{Operation: "failover"})
	if err != nil || p.Operation != "failover" || !slices.ContainsFunc(p.Actions, func(a plan.Action) bool { return a.Kind == plan.Failover }) {
		t.Fatalf("failover plan: %v %+v", err, p)
	}
	if _, err := e.Plan(context.Background(), PlanOptions{Operation: "switcheroo"}); err == nil || !strings.Contains(err.Error(), "switcheroo") {
		t.Fatalf("an unknown operation: %v", err)
	}
}
