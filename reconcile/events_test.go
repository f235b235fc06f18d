package reconcile

import (
	"reflect"
	"testing"
)

// eventLog records what an operation reports.
type eventLog []Event

func (l *eventLog) Report(e Event) { *l = append(*l, e) }

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
		Note{Action: "backup.take[db1]", Text: "Backing up db1 (primary)..."},
		Note{Action: "backup.take[db1]", Text: "  1 MiB, 2 MiB/s"},
		Note{Action: "backup.take[db1]", Text: ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("before Flush: %#v, want %#v", got, want)
	}
	w.Flush()
	want = append(want, Note{Action: "backup.take[db1]", Text: "Backup done"})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after Flush: %#v, want %#v", got, want)
	}
	var msgs eventLog
	_, _ = messages(&msgs).Write([]byte("Acquiring the cluster lock...\n"))
	if !reflect.DeepEqual(msgs, eventLog{Message{Text: "Acquiring the cluster lock..."}}) {
		t.Fatalf("messages: %#v", msgs)
	}
}
