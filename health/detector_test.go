package health

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// readOnlyErr stands for the postgres provider's ReadOnlyError.
type readOnlyErr struct{}

func (readOnlyErr) Error() string  { return "db1 refuses writes: default_transaction_read_only is on" }
func (readOnlyErr) ReadOnly() bool { return true }

var (
	timeout = errors.New("heartbeat on db1: no commit within 800ms (the write path is wedged)")
	// The observations one check may see, with db2 and db3 standbys of db1.
	healthy = Observation{Primary: "db1", Reachable: true, Standbys: []Standby{
		{Name: "db2", Reachable: true, Streaming: true, LastMessageAge: 300 * time.Millisecond},
		{Name: "db3", Reachable: true, Streaming: true, LastMessageAge: 900 * time.Millisecond}}}
	// unreachable, and the standbys heard nothing for 2.5s / lost their receiver.
	gone = Observation{Primary: "db1", Error: "connect: connection refused", Standbys: []Standby{
		{Name: "db2", Reachable: true, Streaming: true, LastMessageAge: 2500 * time.Millisecond},
		{Name: "db3", Reachable: true, Receiver: "no WAL receiver"}}}
	// unreachable from pgha, but db3 still hears it: a blip between pgha and db1.
	blip = Observation{Primary: "db1", Error: "i/o timeout", Standbys: []Standby{
		{Name: "db2", Reachable: true, Streaming: true, LastMessageAge: 2500 * time.Millisecond},
		{Name: "db3", Reachable: true, Streaming: true, LastMessageAge: 400 * time.Millisecond}}}
	// reachable, the heartbeat times out, and no WAL reaches the standbys.
	wedged = Observation{Primary: "db1", Reachable: true, Probe: timeout, Standbys: []Standby{
		{Name: "db2", Reachable: true, Streaming: true, LastMessageAge: 3 * time.Second},
		{Name: "db3", Reachable: true, Streaming: true, LastMessageAge: 3100 * time.Millisecond}}}
	// reachable, the heartbeat times out (CPU starved), clients' WAL still flows.
	loaded   = Observation{Primary: "db1", Reachable: true, Probe: timeout, Standbys: healthy.Standbys}
	readOnly = Observation{Primary: "db1", Reachable: true, Probe: fmt.Errorf("heartbeat: %w", readOnlyErr{}), Standbys: gone.Standbys}
	crashed  = Observation{Primary: "db1", ProcessDead: true, Error: "connect: connection refused", Standbys: gone.Standbys}
	// the runtime says the process is gone, the standbys still hear it.
	crashedButHeard = Observation{Primary: "db1", ProcessDead: true, Error: "connect: connection refused", Standbys: healthy.Standbys}
	// the process is gone and the standbys have not noticed yet (or cannot be reached).
	crashedAlone = Observation{Primary: "db1", ProcessDead: true, Error: "connect: connection refused", Standbys: []Standby{{Name: "db2"}, {Name: "db3"}}}
	// every standby unreachable: pgha may be the one cut off.
	isolated = Observation{Primary: "db1", Error: "i/o timeout", Standbys: []Standby{{Name: "db2"}, {Name: "db3"}}}
	single   = Observation{Primary: "db1", Error: "connect: connection refused"}
	// db2 after a failover, healthy; and unreachable.
	db2Healthy = Observation{Primary: "db2", Reachable: true, Standbys: []Standby{{Name: "db3", Reachable: true, Streaming: true, LastMessageAge: time.Second}}}
	db2Gone    = Observation{Primary: "db2", Error: "connection refused", Standbys: []Standby{{Name: "db3", Reachable: true, Receiver: "no WAL receiver"}}}
)

type want struct {
	status   Status
	failures int
	reason   string // a substring of the reason
	dead     bool
}

func TestDetector(t *testing.T) {
	cfg := Config{Threshold: 3, Interval: time.Second}
	for _, c := range []struct {
		name  string
		cfg   Config
		steps []Observation
		want  []want
		// confirmed is the last verdict's Confirmed.
		confirmed []string
	}{
		{name: "healthy", steps: []Observation{healthy, healthy},
			want: []want{{Healthy, 0, "", false}, {Healthy, 0, "", false}}},
		{name: "one blip then healthy", steps: []Observation{healthy, gone, healthy, gone, gone},
			want: []want{{Healthy, 0, "", false}, {Suspect, 1, "check 1 of 3", false}, {Healthy, 0, "", false},
				{Suspect, 1, "check 1 of 3", false}, {Suspect, 2, "check 2 of 3", false}}},
		{name: "unreachable and confirmed: lost at the threshold", steps: []Observation{gone, gone, gone, gone},
			want: []want{{Suspect, 1, "db1 is unreachable: connect: connection refused (check 1 of 3)", false}, {Suspect, 2, "", false},
				{Lost, 3, "db1 is unreachable: connect: connection refused, 3 checks in a row; confirmed by db2 heard nothing for 2.5s, db3: no WAL receiver", false},
				{Lost, 4, "4 checks in a row", false}},
			confirmed: []string{"db2", "db3"}},
		{name: "threshold reached but a standby still streams: suspect", steps: []Observation{blip, blip, blip, blip, gone},
			want: []want{{Suspect, 1, "db3 still streams from it (last message 400ms ago)", false}, {Suspect, 2, "", false},
				{Suspect, 3, "check 3 of 3), but db3 still streams from it (last message 400ms ago): not lost while a standby hears it", false},
				{Suspect, 4, "", false},
				// db3 stops hearing it: the count carried on, lost at once.
				{Lost, 5, "5 checks in a row", false}},
			confirmed: []string{"db2", "db3"}},
		{name: "wedged write path: lost after the threshold", steps: []Observation{healthy, wedged, wedged, wedged},
			want: []want{{Healthy, 0, "", false}, {Suspect, 1, "db1 answers but its write probe failed: heartbeat on db1: no commit within 800ms", false},
				{Suspect, 2, "", false}, {Lost, 3, "write probe failed", false}},
			confirmed: []string{"db2", "db3"}},
		{name: "heartbeat slow under load while WAL flows: never lost", steps: []Observation{loaded, loaded, loaded, loaded, loaded},
			want: []want{{Suspect, 1, "", false}, {Suspect, 2, "", false}, {Suspect, 3, "db2 still streams", false}, {Suspect, 4, "", false}, {Suspect, 5, "", false}}},
		{name: "flapping is never lost", steps: []Observation{gone, gone, healthy, gone, gone, healthy, gone, gone, healthy},
			want: []want{{Suspect, 1, "", false}, {Suspect, 2, "", false}, {Healthy, 0, "", false},
				{Suspect, 1, "", false}, {Suspect, 2, "", false}, {Healthy, 0, "", false},
				{Suspect, 1, "", false}, {Suspect, 2, "", false}, {Healthy, 0, "", false}}},
		{name: "process dead: lost at once", steps: []Observation{healthy, crashed},
			want:      []want{{Healthy, 0, "", false}, {Lost, 1, "db1's server process is gone (the runtime answers); confirmed by", true}},
			confirmed: []string{"db2", "db3"}},
		{name: "process dead, standbys unreachable: the runtime confirms", steps: []Observation{crashedAlone},
			want:      []want{{Lost, 1, "no standby reachable to confirm it", true}},
			confirmed: nil},
		{name: "process dead but a standby still hears it: suspect until they agree", steps: []Observation{crashedButHeard, crashed},
			want: []want{{Suspect, 1, "the runtime says db1's server process is gone, but db2 still streams from it", false},
				{Lost, 2, "server process is gone", true}}},
		{name: "process dead while reachable is no crash", steps: []Observation{{Primary: "db1", Reachable: true, ProcessDead: true, Standbys: gone.Standbys}},
			want: []want{{Healthy, 0, "", false}}},
		{name: "read-only: suspect, never lost", steps: []Observation{readOnly, readOnly, readOnly, readOnly},
			want: []want{{Suspect, 1, "db1 is read-only: heartbeat: db1 refuses writes", false}, {Suspect, 2, "", false},
				{Suspect, 3, "failing over would not fix", false}, {Suspect, 4, "", false}}},
		{name: "no standby reachable: pgha may be cut off", steps: []Observation{isolated, isolated, isolated},
			want: []want{{Suspect, 1, "check 1 of 3", false}, {Suspect, 2, "", false},
				{Suspect, 3, "but no standby can confirm it (db2 unreachable, db3 unreachable): pgha may be the one cut off", false}}},
		{name: "no standbys at all: lost, saying so", steps: []Observation{single, single, single},
			want: []want{{Suspect, 1, "", false}, {Suspect, 2, "", false}, {Lost, 3, "no standby to confirm it (the cluster has none)", false}}},
		{name: "a new primary starts afresh", steps: []Observation{gone, gone, db2Gone, db2Healthy, gone},
			want: []want{{Suspect, 1, "", false}, {Suspect, 2, "", false}, {Suspect, 1, "db2 is unreachable", false}, {Healthy, 0, "", false},
				{Suspect, 1, "db1 is unreachable", false}}},
		{name: "threshold 1", cfg: Config{Threshold: 1, Interval: time.Second}, steps: []Observation{healthy, gone},
			want: []want{{Healthy, 0, "", false}, {Lost, 1, "1 checks in a row", false}}},
		{name: "threshold 0 counts as 1", cfg: Config{Interval: time.Second}, steps: []Observation{gone},
			want: []want{{Lost, 1, "", false}}},
		{name: "StaleAfter decides who still hears it", cfg: Config{Threshold: 2, Interval: time.Second, StaleAfter: 3 * time.Second},
			steps: []Observation{gone, gone}, // db2's 2.5s is now fresh
			want:  []want{{Suspect, 1, "", false}, {Suspect, 2, "db2 still streams from it (last message 2.5s ago)", false}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if len(c.steps) != len(c.want) {
				t.Fatalf("case has %d steps and %d wants", len(c.steps), len(c.want))
			}
			cc := cfg
			if c.cfg != (Config{}) {
				cc = c.cfg
			}
			d := New(cc)
			var v Verdict
			for i, obs := range c.steps {
				v = d.Update(obs)
				w := c.want[i]
				if v.Status != w.status || v.Failures != w.failures || v.ProcessDead != w.dead || !strings.Contains(v.Reason, w.reason) {
					t.Fatalf("step %d: got %s failures %d dead %v reason %q; want %s failures %d dead %v reason containing %q",
						i, v.Status, v.Failures, v.ProcessDead, v.Reason, w.status, w.failures, w.dead, w.reason)
				}
				if (v.Status == Healthy) != (v.Reason == "") {
					t.Fatalf("step %d: %s with reason %q", i, v.Status, v.Reason)
				}
				if v.Primary != obs.Primary || v.Threshold != max(cc.Threshold, 1) {
					t.Fatalf("step %d: primary %q threshold %d", i, v.Primary, v.Threshold)
				}
			}
			if c.confirmed != nil && !slices.Equal(v.Confirmed, c.confirmed) {
				t.Fatalf("confirmed %v, want %v", v.Confirmed, c.confirmed)
			}
		})
	}
}

func TestReset(t *testing.T) {
	d := New(Config{Threshold: 3, Interval: time.Second})
	d.Update(gone)
	d.Update(gone)
	d.Reset()
	if v := d.Update(gone); v.Status != Suspect || v.Failures != 1 {
		t.Fatalf("after Reset: %+v", v)
	}
}

func TestDefaultStaleAfter(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{time.Second: 2 * time.Second, 200 * time.Millisecond: time.Second, 5 * time.Second: 10 * time.Second} {
		if got := New(Config{Threshold: 3, Interval: in}).Config().StaleAfter; got != want {
			t.Errorf("StaleAfter for interval %s = %s, want %s", in, got, want)
		}
	}
	if got := New(Config{Threshold: 3, Interval: time.Second, StaleAfter: 5 * time.Second}).Config().StaleAfter; got != 5*time.Second {
		t.Errorf("a StaleAfter given was replaced: %s", got)
	}
}
