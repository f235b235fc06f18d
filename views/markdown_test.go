package views

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/plan"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestMarkdownGolden renders saved plan files (written by plan.WriteFile
// from the plan package's cases) as `pgha show -markdown` does. The split
// case uses a small limit so that its golden stays readable; the limit
// itself is checked on a large plan below.
func TestMarkdownGolden(t *testing.T) {
	for _, tc := range []struct {
		name, plan string
		limit      int
		parts      int
	}{
		{"after_failover", "after_failover", CommentLimit, 1}, // a warning, one action that discards data
		{"split_brain", "split_brain", CommentLimit, 1},       // a critical finding
		{"no_changes", "no_changes", CommentLimit, 1},
		{"after_failover_split", "after_failover", 1500, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := plan.ReadFile(filepath.Join("testdata", tc.plan+".tfplan"))
			if err != nil {
				t.Fatal(err)
			}
			parts := Markdown(p, tc.limit)
			if len(parts) != tc.parts {
				t.Fatalf("%d parts, want %d", len(parts), tc.parts)
			}
			checkParts(t, parts, tc.limit)
			var buf bytes.Buffer
			if err := writeParts(&buf, parts); err != nil {
				t.Fatal(err)
			}
			if tc.limit == CommentLimit {
				var whole bytes.Buffer
				if err := WriteMarkdown(&whole, p); err != nil || whole.String() != buf.String() {
					t.Fatalf("WriteMarkdown differs from Markdown(CommentLimit): %v", err)
				}
			}
			testenv.Golden(t, filepath.Join("testdata", tc.name+".md"), buf.Bytes(), *update)
		})
	}
}

// checkParts asserts what makes each part postable on its own: within
// the limit, one <details> opened and closed, its code fence closed.
func checkParts(t *testing.T, parts []string, limit int) {
	t.Helper()
	for i, part := range parts {
		if len(part) > limit {
			t.Errorf("part %d: %d bytes, limit %d", i+1, len(part), limit)
		}
		lines := strings.Split(part, "\n")
		if slices.Contains(lines, PartSeparator) {
			t.Errorf("part %d holds the separator line", i+1)
		}
		opens, closes := strings.Count(part, "<details>"), strings.Count(part, "</details>")
		if opens != closes || opens > 1 {
			t.Errorf("part %d: %d <details>, %d </details>", i+1, opens, closes)
		}
		// The fence that opens the diff block closes it, once.
		for j, l := range lines {
			if fence, ok := strings.CutSuffix(l, "diff"); ok && strings.Trim(fence, "`") == "" && fence != "" {
				if n := slices.Index(lines[j+1:], fence); n < 0 || slices.Contains(lines[j+1+n+1:], fence) {
					t.Errorf("part %d: the code fence is not closed once:\n%s", i+1, part)
				}
				break
			}
		}
		if i > 0 && !strings.Contains(part, fmt.Sprintf("(continued, part %d of %d)", i+1, len(parts))) {
			t.Errorf("part %d does not say which part it is:\n%s", i+1, part)
		}
	}
}

// diffBodies returns the lines inside the diff blocks of all parts.
func diffBodies(parts []string, fence string) []string {
	var out []string
	for _, part := range parts {
		in := false
		for _, l := range strings.Split(part, "\n") {
			switch {
			case l == fence+"diff":
				in = true
			case l == fence:
				in = false
			case in:
				out = append(out, l)
			}
		}
	}
	return out
}

// bigPlan has n actions that discard nothing, each with a long reason,
// and one that discards data at the end.
func bigPlan(n int) *plan.Plan {
	p := &plan.Plan{FormatVersion: plan.FormatVersion, Cluster: "demo", Operation: "apply"}
	for i := range n {
		p.Actions = append(p.Actions, plan.Action{
			ID: fmt.Sprintf("slot.create[db1/s%d]", i), Kind: plan.SlotCreate, Change: plan.Create, Target: fmt.Sprintf("db1/s%d", i),
			Reason: strings.Repeat("a slot nobody declared, still a reason long enough to fill a comment ", 2),
			After:  map[string]string{"slot": fmt.Sprintf("s%d", i), "type": "physical"},
		})
	}
	p.Actions = append(p.Actions, plan.Action{ID: "node.destroy[db3]", Kind: plan.NodeDestroy, Change: plan.Delete, Target: "db3", Reason: "db3 goes", DataLoss: true,
		Before: map[string]string{"data": "kept"}})
	return p
}

func TestMarkdownSplitsAtCommentLimit(t *testing.T) {
	p := bigPlan(1000)
	var text bytes.Buffer
	plan.Text(&text, p)
	if text.Len() < 3*CommentLimit {
		t.Fatalf("the plan is only %d bytes", text.Len())
	}
	parts := Markdown(p, CommentLimit)
	if len(parts) < 4 {
		t.Fatalf("%d parts for %d bytes of plan", len(parts), text.Len())
	}
	checkParts(t, parts, CommentLimit)
	// Every line of the plan, in order, once: nothing lost at a cut.
	got := strings.Join(diffBodies(parts, "```"), "\n")
	want := strings.Join(diffLines(text.String()), "\n")
	if got != want {
		t.Fatalf("the parts' diff blocks do not add up to the plan (%d bytes, want %d)", len(got), len(want))
	}
	// The action that discards data is the last of the plan, but the
	// first comment names it.
	if !strings.Contains(parts[0], "- **`node.destroy[db3]`: db3 goes**") || strings.Contains(parts[1], "**This action discards data") {
		t.Fatalf("the data-loss list is not on top of the first part only:\n%s", parts[0][:2000])
	}
	// The parts are packed: each but the last is nearly full.
	for i, part := range parts[:len(parts)-1] {
		if len(part) < CommentLimit-1000 {
			t.Errorf("part %d holds only %d bytes", i+1, len(part))
		}
	}
}

func TestMarkdownLongLineAndBackticks(t *testing.T) {
	p := &plan.Plan{FormatVersion: plan.FormatVersion, Cluster: "demo", Operation: "apply", Actions: []plan.Action{{
		ID: "settings.update[db1]", Kind: plan.SettingsUpdate, Change: plan.Update, Target: "db1",
		Reason: "a *setting* with `ticks` and <b>html</b> changed",
		Before: map[string]string{"application_name": "old"},
		After:  map[string]string{"application_name": "```` and " + strings.Repeat("x", 3000)},
	}}}
	parts := Markdown(p, 2048)
	checkParts(t, parts, 2048)
	// The cut line fills a part of its own, between the lines before
	// and after it.
	if len(parts) != 3 {
		t.Fatalf("%d parts:\n%s", len(parts), strings.Join(parts, "\n=====\n"))
	}
	all := strings.Join(parts, "")
	// A value with four backticks needs a five-backtick fence.
	if strings.Count(all, "\n`````diff\n") != 3 || strings.Count(all, "\n`````\n") != 3 {
		t.Fatalf("fence not longer than the value's backticks:\n%s", all)
	}
	// The line too long for a comment is cut, marked, and the rest kept.
	if !strings.HasSuffix(parts[1], "xxx …\n`````\n\n</details>\n") || !strings.Contains(all, "Plan: 0 to add, 1 to change, 0 to destroy.\n`````") {
		t.Fatalf("long line:\n%s", all)
	}
	if !strings.Contains(all, "!   settings.update[db1]") {
		t.Fatalf("update mark not moved to column 0:\n%s", all)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"pg_rewind *now*":         `pg\_rewind \*now\*`,
		"<b>x</b> [a](b) | ~~s~~": `\<b\>x\</b\> \[a\](b) \| \~\~s\~\~`,
		"run `pgha plan` & see":   "run \\`pgha plan\\` \\& see",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
	if got := code("a`b"); got != "``a`b``" {
		t.Errorf("code = %q", got)
	}
}

func TestDiffLines(t *testing.T) {
	text := "Warning: x\n\n  - a bullet in a finding\n\npgha will perform the following actions:\n\n  # why\n  ~ node.start[db2]\n      ~ running = \"false\" -> \"true\"\n      + role    = \"standby\"\n      - slot    = \"x\"\n-/+ node.replace[db3]\n\nPlan: 1 to add, 1 to change, 1 to destroy.\n"
	want := []string{"Warning: x", "", "  - a bullet in a finding", "", "pgha will perform the following actions:", "", "  # why",
		"!   node.start[db2]", "!       running = \"false\" -> \"true\"", "+       role    = \"standby\"", "-       slot    = \"x\"",
		"-/+ node.replace[db3]", "", "Plan: 1 to add, 1 to change, 1 to destroy."}
	got := diffLines(text)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDocumentedContract keeps the documents that others copy in step
// with the code: the README and the CI example split on PartSeparator,
// and the README lists every action kind and param of the JSON plan and
// its format version.
func TestDocumentedContract(t *testing.T) {
	split := "/^" + PartSeparator + "$/"
	for _, f := range []string{"../README.md", "../examples/ci/pgha-plan.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), split) {
			t.Errorf("%s does not split on %s", f, split)
		}
	}
	b, _ := os.ReadFile("../examples/ci/pgha-plan.yml")
	for _, want := range []string{"pgha validate -f cluster.hcl", "pgha plan -detailed-exitcode -out plan.tfplan", "pgha show -markdown plan.tfplan", "case \"$code\" in 0|2|4) ;;", "exitcode == '4'"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the CI example lacks %q", want)
		}
	}
	readme, _ := os.ReadFile("../README.md")
	for _, k := range plan.Kinds {
		if !strings.Contains(string(readme), "`"+string(k)+"`") {
			t.Errorf("README does not list the action kind %s", k)
		}
	}
	if want := "`format_version` is `\"" + plan.FormatVersion + "\"`"; !strings.Contains(string(readme), want) {
		t.Errorf("README does not say %s", want)
	}
	params := reflect.TypeFor[plan.Params]()
	for i := range params.NumField() {
		name, _, _ := strings.Cut(params.Field(i).Tag.Get("json"), ",")
		if !strings.Contains(string(readme), "| `"+name+"`") && !strings.Contains(string(readme), ", `"+name+"`") {
			t.Errorf("README's params table lacks %s", name)
		}
	}
}

// TestMarkdownFindingsFillAComment: findings too long for one comment get
// the first part alone, cut at a line with a note; the plan follows whole.
func TestMarkdownFindingsFillAComment(t *testing.T) {
	p := bigPlan(3)
	p.Diagnostics = []plan.Diagnostic{{Severity: plan.Critical, Summary: "many findings",
		Detail: strings.Repeat("a standby that does not stream, with a long explanation of why\n", 2000)}}
	parts := Markdown(p, CommentLimit)
	checkParts(t, parts, CommentLimit)
	if len(parts) < 3 || strings.Contains(parts[0], "<details>") ||
		!strings.HasSuffix(parts[0], "> a standby that does not stream, with a long explanation of why\n\n_(cut: the findings exceed one comment; run `pgha show` for all of them)_\n") {
		t.Fatalf("%d parts; first ends %q", len(parts), parts[0][max(0, len(parts[0])-300):])
	}
	// The plan (it repeats the findings, 128 kB) follows in the next parts, whole.
	var text bytes.Buffer
	plan.Text(&text, p)
	if got, want := strings.Join(diffBodies(parts, "```"), "\n"), strings.Join(diffLines(text.String()), "\n"); got != want {
		t.Fatalf("the plan is not whole after the findings (%d bytes, want %d)", len(got), len(want))
	}
}

// FuzzMarkdown: whatever the plan's text, every part fits the limit, opens
// and closes its <details> and its code fence, and no line of the plan can
// close the fence early.
func FuzzMarkdown(f *testing.F) {
	f.Add("demo", "db2 is not running", "```", "detail\nmore", 40, 2000)
	f.Add("x", strings.Repeat("long ", 500), "a\n```\nb", "", 300, 1024)
	f.Add("y", "a\n```\n"+PartSeparator+"\n````", "v", "d", 3, 1500)
	f.Fuzz(func(t *testing.T, cluster, reason, value, detail string, n, limit int) {
		n = min(max(n, 0), 400)
		p := bigPlan(n)
		p.Cluster = cluster
		for i := range p.Actions {
			p.Actions[i].Reason = reason
			p.Actions[i].After = map[string]string{"v": value}
		}
		p.Diagnostics = []plan.Diagnostic{{Severity: plan.Warning, Summary: reason, Detail: detail}}
		limit = min(max(limit, 0), 3*CommentLimit)
		parts := Markdown(p, limit)
		checkParts(t, parts, max(limit, 1024))
		var text bytes.Buffer
		plan.Text(&text, p)
		fence := codeFence(diffLines(text.String()))
		for i, part := range parts {
			if opens, closes := strings.Count(part, "\n"+fence+"diff\n"), strings.Count(part, "\n"+fence+"\n"); opens != closes || opens > 1 {
				t.Fatalf("part %d: %d fences opened, %d closed", i+1, opens, closes)
			}
			in := false
			for _, l := range strings.Split(part, "\n") {
				switch {
				case l == fence+"diff":
					in = true
				case l == fence:
					in = false
				case in && strings.HasPrefix(strings.TrimLeft(l, " "), fence):
					t.Fatalf("part %d: a plan line could close the fence: %q", i+1, l)
				}
			}
		}
	})
}
