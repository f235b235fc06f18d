package config

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics prints each diagnostic as
//
//	Error: Summary
//	  --> cluster.hcl:14:17
//	   |
//	14 |     password = env("X")
//	   |                ^^^^^^^^
//	   = what to do
//
// so that editors and terminals can jump to file:line:col, and the reader
// sees the source line with the range underlined.
func (r *Result) WriteDiagnostics(w io.Writer) error {
	for _, d := range r.Diags {
		sev := "Error"
		if d.Severity == hcl.DiagWarning {
			sev = "Warning"
		}
		if _, err := fmt.Fprintf(w, "%s: %s\n", sev, d.Summary); err != nil {
			return err
		}
		if d.Subject != nil {
			writeSnippet(w, r.Files, d.Subject)
		}
		if d.Detail != "" {
			pad := "  "
			if d.Subject != nil {
				pad = strings.Repeat(" ", gutter(d.Subject)+1) + "= "
			}
			fmt.Fprintf(w, "%s%s\n", pad, strings.ReplaceAll(d.Detail, "\n", "\n"+strings.Repeat(" ", len(pad))))
		}
		fmt.Fprintln(w)
	}
	return nil
}

func gutter(rng *hcl.Range) int { return len(fmt.Sprint(rng.Start.Line)) }

func writeSnippet(w io.Writer, files map[string]*hcl.File, rng *hcl.Range) {
	g := gutter(rng)
	fmt.Fprintf(w, "%s--> %s:%d:%d\n", strings.Repeat(" ", g), rng.Filename, rng.Start.Line, rng.Start.Column)
	f := files[rng.Filename]
	if f == nil {
		return
	}
	lines := strings.Split(string(f.Bytes), "\n")
	if rng.Start.Line < 1 || rng.Start.Line > len(lines) {
		return
	}
	line := strings.TrimRight(lines[rng.Start.Line-1], "\r")
	blank := strings.Repeat(" ", g)
	fmt.Fprintf(w, "%s |\n%d | %s\n", blank, rng.Start.Line, strings.ReplaceAll(line, "\t", " "))
	start := rng.Start.Column - 1
	if start > len(line) {
		start = len(line)
	}
	end := len(line)
	if rng.End.Line == rng.Start.Line {
		end = min(rng.End.Column-1, len(line))
	}
	width := max(utf8.RuneCountInString(line[start:max(start, end)]), 1)
	fmt.Fprintf(w, "%s | %s%s\n", blank, strings.Repeat(" ", utf8.RuneCountInString(line[:start])), strings.Repeat("^", width))
}
