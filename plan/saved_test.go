package plan

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestDecodeEveryBuiltPlan: each plan of the case files survives the
// saved-plan round trip byte for byte.
func TestDecodeEveryBuiltPlan(t *testing.T) {
	n := 0
	for _, tc := range casePlans(t) {
		p := tc.plan
		b, err := JSON(p)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(b)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		again, _ := JSON(back)
		if !bytes.Equal(again, b) {
			t.Errorf("%s: the round trip changed the plan:\n%s\nwant\n%s", tc.name, again, b)
		}
		n += len(p.Actions)
	}
	if n < 20 {
		t.Fatalf("only %d actions across the cases", n)
	}
}

// TestDecodeRefuses: edits that turn a plan into something apply never
// showed are refused with the reason.
func TestDecodeRefuses(t *testing.T) {
	c := testCluster()
	s := converged(c)
	stop(s.Node("db2"))
	stop(s.Node("db3"))
	b, err := JSON(Build(c, s))
	if err != nil {
		t.Fatal(err)
	}
	good := string(b)
	if !strings.Contains(good, `"kind": "node.start"`) || !strings.Contains(good, `"id": "node.start[db3]"`) {
		t.Fatalf("unexpected plan:\n%s", good)
	}
	for _, tc := range []struct {
		name, from, to, err string
	}{
		{"unknown kind", `"kind": "node.start"`, `"kind": "node.wipe"`, `unknown kind "node.wipe"`},
		{"unknown change", `"change": "`, `"change": "x`, `unknown change "x`},
		{"repeated id", `"id": "node.start[db3]"`, `"id": "node.start[db2]"`, `id "node.start[db2]" is empty or repeated`},
		{"unknown field", `"cluster":`, `"run_shell": "rm -rf /", "cluster":`, `unknown field "run_shell"`},
		{"old format", `"format_version": "1.`, `"format_version": "0.`, `format_version "0.`},
		{"before params", `"format_version": "1.1"`, `"format_version": "1.0"`, "written by an older pgha, and its actions carry no params, which apply reads; run `pgha plan -out FILE` again"},
		{"minor not a number", `"format_version": "1.1"`, `"format_version": "1.x"`, `format_version "1.x"`},
		{"operation", `"operation": "apply"`, `"operation": "exec"`, `operation "exec"`},
		{"trailing data", "\n}", "\n}\n{}", "data after the plan"},
		{"summary", `"add": 0`, `"add": 7`, "does not count its actions"},
	} {
		src := strings.Replace(good, tc.from, tc.to, 1)
		if tc.name == "trailing data" {
			src = good + "\n{}"
		}
		if src == good {
			t.Fatalf("%s: %q not in the plan", tc.name, tc.from)
		}
		_, err := Decode([]byte(src))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.err)
		}
	}
}

// TestDecodeRequiresParams: a saved action whose params lost what its
// executor needs is refused, naming the param, for every kind that needs
// one; the same plans with their params decode.
func TestDecodeRequiresParams(t *testing.T) {
	want := map[Kind]string{SlotCreate: "slot", SlotDrop: "slot", DataRemove: "path", NodeRemove: "data_dir",
		StandbyRejoin: "method", Switchover: "from", BackupTake: "backup_type", BackupExpire: "backups", CatalogRecord: "primary"}
	seen := map[Kind]bool{}
	for _, tc := range casePlans(t) {
		p := tc.plan
		for i, a := range p.Actions {
			field, ok := want[a.Kind]
			if !ok || (a.Kind == CatalogRecord && a.Change == Delete) {
				continue
			}
			seen[a.Kind] = true
			q := *p
			q.Actions = slices.Clone(p.Actions)
			q.Actions[i].Params = Params{}
			b, err := JSON(&q)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(b)
			if msg := "action " + a.ID + " has no params." + field; err == nil || !strings.Contains(err.Error(), msg) {
				t.Errorf("%s: %s without params: error %v, want %q", tc.name, a.ID, err, msg)
			}
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("no plan case has a %s action", k)
		}
	}
}

// FuzzDecodePlan: the saved-plan reader never panics, and what it accepts
// is a well-formed plan that re-encodes to a file it accepts again, equal.
func FuzzDecodePlan(f *testing.F) {
	c := testCluster()
	s := converged(c)
	stop(s.Node("db2"))
	b, _ := JSON(Build(c, s))
	f.Add(b)
	f.Add([]byte(`{"format_version":"1.1","operation":"apply","actions":[{"id":"a","kind":"node.start","change":"create","depends_on":["a"]}]}`))
	f.Add([]byte(`{"format_version":"1.1"} {}`))
	f.Add([]byte(`{"format_version":"1.1","operation":"apply","actions":[{"id":"a","kind":"backup.expire","change":"delete","params":{"backups":[]}}]}`))
	f.Add([]byte(`{"format_version":"1.1","operation":"apply","actions":[{"id":"a","kind":"node.start","change":"create","params":{"nodes":[]}}]}`))
	f.Add([]byte(`{"format_version":"1.0","operation":"apply","actions":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Decode(data)
		if err != nil {
			return
		}
		if err := p.check(); err != nil {
			t.Fatalf("accepted a malformed plan: %v", err)
		}
		out, err := JSON(p)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("re-encoded plan refused: %v\n%s", err, out)
		}
		again, _ := JSON(back)
		if !bytes.Equal(again, out) {
			t.Fatalf("round trip not stable:\n%s\n%s", out, again)
		}
	})
}
