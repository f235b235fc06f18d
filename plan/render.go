package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Text renders a plan the way Terraform users read plans: a symbol per
// action, a # line saying why, attribute changes, and a closing summary.
// It renders from the same data as JSON, so the two never disagree.
func Text(w io.Writer, p *Plan) {
	for _, d := range p.Diagnostics {
		label := "Warning"
		if d.Severity == Critical {
			label = "Critical"
		}
		fmt.Fprintf(w, "%s: %s\n", label, d.Summary)
		if d.Detail != "" {
			fmt.Fprintf(w, "\n  %s\n", strings.ReplaceAll(d.Detail, "\n", "\n  "))
		}
		fmt.Fprintln(w)
	}
	if p.Archive != nil {
		fmt.Fprintf(w, "%s\n\n", p.Archive)
	}
	if p.Empty() {
		fmt.Fprintln(w, p.SummaryLine())
		return
	}
	fmt.Fprintln(w, "pgha will perform the following actions:")
	for _, a := range p.Actions {
		fmt.Fprintf(w, "\n  # %s\n", a.Reason)
		if a.DataLoss {
			fmt.Fprintln(w, "  # !! this discards data")
		}
		fmt.Fprintf(w, "%*s %s\n", 3, a.Change.Symbol(), a.ID)
		renderAttrs(w, a)
		switch n := len(a.DependsOn); {
		case n > 3:
			fmt.Fprintf(w, "      (after the %d actions above)\n", n)
		case n > 0:
			fmt.Fprintf(w, "      (after %s)\n", strings.Join(a.DependsOn, ", "))
		}
	}
	fmt.Fprintf(w, "\n%s\n", p.SummaryLine())
}

// SummaryLine is the plan's last line, the one a reviewer reads first:
// Terraform's "Plan: N to add, N to change, N to destroy." or, for an
// empty plan, which kind of "No changes." it is. The text and Markdown
// views both print it, so they never word it differently.
func (p *Plan) SummaryLine() string {
	if p.Empty() {
		switch {
		case p.Operation == "destroy":
			return "No changes. Nothing of this cluster is left to destroy."
		case p.Critical():
			// Not "matches the configuration": it does not, and pgha
			// cannot say how to get there alone.
			return "No changes pgha can make on its own: the cluster does not match the configuration (see the critical findings above)."
		default:
			return "No changes. The cluster matches the configuration."
		}
	}
	s := p.Summary()
	return fmt.Sprintf("Plan: %d to add, %d to change, %d to destroy.", s.Add, s.Change, s.Destroy)
}

func renderAttrs(w io.Writer, a Action) {
	keys := map[string]bool{}
	for k := range a.Before {
		keys[k] = true
	}
	for k := range a.After {
		keys[k] = true
	}
	names := make([]string, 0, len(keys))
	width := 0
	for k := range keys {
		names = append(names, k)
		width = max(width, len(k))
	}
	sort.Strings(names)
	for _, k := range names {
		b, hasB := a.Before[k]
		af, hasA := a.After[k]
		switch {
		case hasB && hasA && b == af:
			continue
		case hasB && hasA:
			fmt.Fprintf(w, "      ~ %-*s = %q -> %q\n", width, k, b, af)
		case hasA:
			fmt.Fprintf(w, "      + %-*s = %q\n", width, k, af)
		default:
			fmt.Fprintf(w, "      - %-*s = %q\n", width, k, b)
		}
	}
}

// jsonPlan is the documented machine format (see README, "JSON plan").
type jsonPlan struct {
	*Plan
	Summary Summary `json:"summary"`
}

// JSON renders the plan in the stable machine format.
func JSON(p *Plan) ([]byte, error) {
	return json.MarshalIndent(jsonPlan{Plan: p, Summary: p.Summary()}, "", "  ")
}
