package clusterfile

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics prints each diagnostic as
//
//	Error: Summary
//	  --> cluster.hcl:14:16
//	   |
//	14 |     password = env("X")
//	   |                ^^^^^^^^
//	   = what to do
//
// so that editors and terminals can jump to file:line:col, and the reader
// sees the source line with the range underlined. (hcl's own
// NewDiagnosticTextWriter shows "on FILE line N" and marks the range only
// with colour, which is lost in logs and CI output.)
func (r *Result) WriteDiagnostics(w io.Writer) error {
	var b bytes.Buffer
	for _, d := range r.Diags {
		sev := "Error"
		if d.Severity == hcl.DiagWarning {
			sev = "Warning"
		}
		fmt.Fprintf(&b, "%s: %s\n", sev, d.Summary)
		pad := "  "
		if d.Subject != nil {
			writeSnippet(&b, r.Files[d.Subject.Filename], d.Subject)
			pad = strings.Repeat(" ", gutter(d.Subject)+1) + "= "
		}
		if d.Detail != "" {
			fmt.Fprintf(&b, "%s%s\n", pad, strings.ReplaceAll(d.Detail, "\n", "\n"+strings.Repeat(" ", len(pad))))
		}
		b.WriteByte('\n')
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write diagnostics: %w", err)
	}
	return nil
}

func gutter(rng *hcl.Range) int { return len(fmt.Sprint(rng.Start.Line)) }

// writeSnippet prints the location, the source line and a row of carets
// under the range. It works on byte offsets, which stay right on lines
// with multi-byte characters, and keeps tabs so that the carets line up.
func writeSnippet(b *bytes.Buffer, f *hcl.File, rng *hcl.Range) {
	g := gutter(rng)
	fmt.Fprintf(b, "%s--> %s:%d:%d\n", strings.Repeat(" ", g), rng.Filename, rng.Start.Line, rng.Start.Column)
	if f == nil || rng.Start.Byte < 0 || rng.Start.Byte > len(f.Bytes) {
		return
	}
	src := f.Bytes
	lineStart := bytes.LastIndexByte(src[:rng.Start.Byte], '\n') + 1
	lineEnd := len(src)
	if i := bytes.IndexByte(src[lineStart:], '\n'); i >= 0 {
		lineEnd = lineStart + i
	}
	line := strings.TrimRight(string(src[lineStart:lineEnd]), "\r")
	start := rng.Start.Byte - lineStart
	end := min(max(rng.End.Byte-lineStart, start), len(line))
	start = min(start, len(line))

	indent := []rune(line[:start])
	for i, c := range indent {
		if c != '\t' {
			indent[i] = ' '
		}
	}
	width := max(utf8.RuneCountInString(line[start:end]), 1)
	blank := strings.Repeat(" ", g)
	fmt.Fprintf(b, "%s |\n%d | %s\n", blank, rng.Start.Line, line)
	fmt.Fprintf(b, "%s | %s%s\n", blank, string(indent), strings.Repeat("^", width))
}
