package policy

import (
	"slices"
	"testing"
	"time"

	"github.com/pgha/pgha/state"
)

// link is a backup with its parent, in the chain parentage gives it.
func link(id, typ, parent string, t time.Time) state.Backup {
	b := bk(id, typ, t)
	b.Parent, b.Root = parent, id
	if parent != "" {
		b.Root = roots[parent]
	}
	roots[id] = b.Root
	return b
}

var roots = map[string]string{}

// TestExpired: chains go whole, only when every member is past the age
// rule and the chain is outside the count rule; the newest chain stays
// whatever the rules say.
func TestExpired(t *testing.T) {
	w1 := []state.Backup{link("f1", "full", "", at(-14, 2, 0)), link("i1", "incremental", "f1", at(-13, 2, 0)), link("d1", "differential", "f1", at(-12, 2, 0)), link("i2", "incremental", "d1", at(-11, 2, 0))}
	w2 := []state.Backup{link("f2", "full", "", at(-7, 2, 0)), link("i3", "incremental", "f2", at(-6, 2, 0))}
	w3 := []state.Backup{link("f3", "full", "", at(0, 2, 0))}
	all := slices.Concat(w1, w2, w3)
	failed := link("f0", "full", "", at(-20, 2, 0))
	failed.Status = "failed"
	cases := []struct {
		name string
		all  []state.Backup
		r    Retention
		now  time.Time
		want [][]string
	}{
		{"six days", all, Retention{Days: 6}, at(0, 3, 0), [][]string{{"f1", "i1", "d1", "i2"}, {"f2", "i3"}}},
		{"a young dependent keeps its full", all, Retention{Days: 6}, at(-1, 3, 0), [][]string{{"f1", "i1", "d1", "i2"}}},
		{"count of fulls", all, Retention{Fulls: 2}, at(0, 3, 0), [][]string{{"f1", "i1", "d1", "i2"}}},
		{"both rules keep what either keeps", all, Retention{Days: 30, Fulls: 1}, at(0, 3, 0), nil},
		{"the newest chain is never expired", w1, Retention{Days: 1}, at(30, 0, 0), nil},
		{"no rule, nothing expires", all, Retention{}, at(60, 0, 0), nil},
		{"failed backups are no chain", append([]state.Backup{failed}, w3...), Retention{Days: 1}, at(0, 3, 0), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got [][]string
			for _, ch := range Expired(tc.all, tc.r, tc.now) {
				var ids []string
				for _, m := range ch.Members {
					ids = append(ids, m.ID)
				}
				if ch.Reason == "" || ch.Full.ID != ids[0] {
					t.Errorf("chain %v: full %s, reason %q", ids, ch.Full.ID, ch.Reason)
				}
				got = append(got, ids)
			}
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("expired %v, want %v", got, tc.want)
			}
		})
	}
}

func TestChain(t *testing.T) {
	all := []state.Backup{link("f", "full", "", at(0, 2, 0)), link("i1", "incremental", "f", at(1, 2, 0)), link("d", "differential", "f", at(2, 2, 0)),
		link("i2", "incremental", "d", at(3, 2, 0)), link("orphan", "incremental", "gone", at(3, 3, 0))}
	cases := map[string][]string{"f": {"f"}, "i1": {"f", "i1"}, "d": {"f", "d"}, "i2": {"f", "d", "i2"}}
	for id, want := range cases {
		ch, err := Chain(all, id)
		var got []string
		for _, b := range ch {
			got = append(got, b.ID)
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("chain of %s: %v (%v), want %v", id, got, err, want)
		}
	}
	if _, err := Chain(all, "orphan"); err == nil {
		t.Error("a backup whose parent is gone has a chain")
	}
	if _, err := Chain(all, "nope"); err == nil {
		t.Error("an unknown backup has a chain")
	}
}

// TestReference: an incremental builds on the newest backup of the newest
// full's chain, a differential on that full, carrying the chain's later
// WAL; both read from the newest backup's stop. Older chains and failed
// backups do not count.
func TestReference(t *testing.T) {
	withStop := func(b state.Backup, lsn string) state.Backup { b.StopLSN = lsn; return b }
	old := withStop(link("old", "full", "", at(-7, 2, 0)), "0/1000000")
	f := withStop(link("f", "full", "", at(0, 2, 0)), "0/2000000")
	i1 := withStop(link("i1", "incremental", "f", at(1, 2, 0)), "0/3000000")
	d := withStop(link("d", "differential", "f", at(2, 2, 0)), "0/4000000")
	i2 := withStop(link("i2", "incremental", "d", at(3, 2, 0)), "0/5000000")
	bad := withStop(link("bad", "incremental", "i2", at(4, 2, 0)), "0/6000000")
	bad.Status = "failed"
	all := []state.Backup{old, f, i1, d, i2, bad}
	for _, tc := range []struct {
		kind, ref string
		carry     []string
	}{
		{"incremental", "i2", nil},
		{"differential", "f", []string{"d", "i2"}},
	} {
		ref, carry, since, err := Reference(all, tc.kind)
		var ids []string
		for _, c := range carry {
			ids = append(ids, c.ID)
		}
		if err != nil || ref.ID != tc.ref || !slices.Equal(ids, tc.carry) || since.String() != "0/5000000" {
			t.Errorf("%s: ref %s carry %v since %s (%v), want ref %s carry %v since 0/5000000", tc.kind, ref.ID, ids, since, err, tc.ref, tc.carry)
		}
	}
	if _, _, _, err := Reference([]state.Backup{i1}, "incremental"); err == nil {
		t.Error("an incremental without a full has a reference")
	}
	logical := link("lg", "full", "", at(5, 2, 0))
	logical.Format = FormatLogical
	if _, _, _, err := Reference(append(all, logical), "incremental"); err == nil {
		t.Error("an incremental builds on a logical dump")
	}
}

func TestWALKeepFrom(t *testing.T) {
	all := []state.Backup{
		{ID: "f3", Type: "full", Status: "complete", StartLSN: "0/9000028"},
		{ID: "i2", Type: "incremental", Status: "complete", StartLSN: "0/6000000", Root: "f2"},
		{ID: "f2", Type: "full", Status: "complete", StartLSN: "0/5000028"},
		{ID: "dump", Type: "full", Status: "complete", Format: FormatLogical, StartLSN: "0/2000000"},
		{ID: "failed", Type: "full", Status: "failed", StartLSN: "0/3000028"},
		{ID: "f1", Type: "full", Status: "complete", StartLSN: "0/1000028"},
	}
	for _, tc := range []struct {
		name string
		gone map[string]bool
		want string
	}{
		{"all kept: the oldest full's start", nil, "f1"},
		{"f1 expiring: f2's start (logical and failed fulls need no WAL)", map[string]bool{"f1": true}, "f2"},
		{"f1 and f2 expiring: f3's", map[string]bool{"f1": true, "f2": true, "i2": true}, "f3"},
		{"every full expiring: none, so no WAL may go", map[string]bool{"f1": true, "f2": true, "f3": true}, ""},
	} {
		lsn, full := WALKeepFrom(all, tc.gone)
		got := ""
		if full != nil {
			got = full.ID
			if want, _ := state.ParseLSN(full.StartLSN); lsn != want {
				t.Errorf("%s: LSN %s is not %s's start %s", tc.name, lsn, full.ID, full.StartLSN)
			}
		}
		if got != tc.want {
			t.Errorf("%s: WALKeepFrom = %q, want %q", tc.name, got, tc.want)
		}
	}
}
