package views

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/pgha/pgha/plan"
)

// CommentLimit is the most a GitHub comment body holds: 65,536
// characters. Parts are measured in bytes, never fewer than characters,
// so that a part fits whatever the text's alphabet.
const CommentLimit = 65536

// PartSeparator is the line WriteMarkdown puts between two comments when
// the plan does not fit in one. It is an HTML comment, so a text posted
// whole (against a host without GitHub's limit) still renders cleanly.
const PartSeparator = "<!-- pgha:next-comment -->"

// MarkdownView renders plans for a pull-request comment (`pgha show -markdown`).
type MarkdownView struct{ w io.Writer }

// NewMarkdown returns the Markdown plan view writing to w.
func NewMarkdown(w io.Writer) *MarkdownView { return &MarkdownView{w: w} }

// Plan writes the Markdown of p, in parts when it is long (WriteMarkdown).
func (m *MarkdownView) Plan(p *plan.Plan) error { return WriteMarkdown(m.w, p) }

// WriteMarkdown writes the Markdown of p: one part, or several separated
// by a PartSeparator line when one comment cannot hold it. Each part is
// complete Markdown on its own (every code fence and <details> closed).
func WriteMarkdown(w io.Writer, p *plan.Plan) error {
	return writeParts(w, Markdown(p, CommentLimit))
}

func writeParts(w io.Writer, parts []string) error {
	for i, part := range parts {
		if i > 0 {
			if _, err := fmt.Fprintln(w, PartSeparator); err != nil {
				return err
			}
		}
		if _, err := io.WriteString(w, part); err != nil {
			return err
		}
	}
	return nil
}

// Markdown renders p as pull-request comments of at most limit bytes
// each. The first says what a reviewer must see before approving: the
// summary line, critical findings and warnings, and every action that
// discards data, in bold. The whole text plan follows, collapsed in a
// <details> block as a diff, cut at line boundaries across as many parts
// as it takes; each later part repeats the heading so a reader knows
// which plan it continues.
func Markdown(p *plan.Plan, limit int) []string {
	limit = max(limit, 1024) // room for a heading and a line of plan
	head := header(p)
	var lines []string
	if !p.Empty() {
		var buf bytes.Buffer
		plan.Text(&buf, p)
		lines = diffLines(buf.String())
	}
	if len(lines) == 0 {
		return []string{cut(head, limit)}
	}
	fence := codeFence(lines)
	// A shell's size with room for any part count: the real "part i of
	// n" is never longer than the placeholder, so packing against it
	// keeps every rendered part within limit.
	const wide = 99999
	var chunks [][]string
	first := true
	for len(lines) > 0 {
		prefix := continuation(p, wide, wide)
		if first {
			prefix = head
		}
		room := limit - len(shell(prefix, fence, wide, wide, len(p.Actions), ""))
		if first && room < 256 {
			// The findings alone fill a comment: they get their own.
			chunks = append(chunks, nil)
			first = false
			continue
		}
		first = false
		var chunk []string
		used := 0
		for len(lines) > 0 {
			l := lines[0]
			if len(l)+1 > room {
				l = cutLine(l, room-1)
			}
			if used+len(l)+1 > room {
				break
			}
			chunk = append(chunk, l)
			used += len(l) + 1
			lines = lines[1:]
		}
		chunks = append(chunks, chunk)
	}
	n := len(chunks)
	parts := make([]string, n)
	for i, chunk := range chunks {
		prefix := continuation(p, i+1, n)
		if i == 0 {
			prefix = head
		}
		if chunk == nil {
			parts[i] = cut(head, limit)
			continue
		}
		body := strings.Join(chunk, "\n") + "\n"
		parts[i] = shell(prefix, fence, i+1, n, len(p.Actions), body)
	}
	return parts
}

// header is the top of the first comment: what the plan does, what pgha
// found, and what it would discard.
func header(p *plan.Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### pgha %s plan for cluster %s\n\n", escape(p.Operation), code(oneLine(p.Cluster)))
	fmt.Fprintf(&b, "**%s**\n", escape(p.SummaryLine()))
	for _, d := range p.Diagnostics {
		// GitHub's alerts; elsewhere a plain quote with a bold label.
		kind, label := "WARNING", "Warning"
		if d.Severity == plan.Critical {
			kind, label = "CAUTION", "Critical"
		}
		fmt.Fprintf(&b, "\n> [!%s]\n> **%s: %s**\n", kind, label, escape(oneLine(d.Summary)))
		if d.Detail != "" {
			b.WriteString(">\n")
			for _, l := range strings.Split(d.Detail, "\n") {
				fmt.Fprintf(&b, "> %s\n", escape(l))
			}
		}
	}
	var loss []plan.Action
	for _, a := range p.Actions {
		if a.DataLoss {
			loss = append(loss, a)
		}
	}
	if len(loss) > 0 {
		what := "These actions discard data"
		if len(loss) == 1 {
			what = "This action discards data"
		}
		fmt.Fprintf(&b, "\n**%s; approving the plan approves the loss:**\n\n", what)
		for _, a := range loss {
			fmt.Fprintf(&b, "- **%s: %s**\n", code(oneLine(a.ID)), escape(oneLine(a.Reason)))
		}
	}
	return b.String()
}

// continuation heads every part after the first.
func continuation(p *plan.Plan, i, n int) string {
	return fmt.Sprintf("### pgha %s plan for cluster %s (continued, part %d of %d)\n", escape(p.Operation), code(oneLine(p.Cluster)), i, n)
}

// shell wraps a part of the text plan: collapsed, as a diff, closed.
func shell(prefix, fence string, i, n, actions int, body string) string {
	summary := fmt.Sprintf("Show the plan (%d actions)", actions)
	if actions == 1 {
		summary = "Show the plan (1 action)"
	}
	if n > 1 {
		summary += fmt.Sprintf(", part %d of %d", i, n)
	}
	return fmt.Sprintf("%s\n<details><summary>%s</summary>\n\n%sdiff\n%s%s\n\n</details>\n", prefix, summary, fence, body, fence)
}

// symbol matches the change marks of the text plan's action and
// attribute lines ("  ~ node.start[db2]", "      + slot = ...").
var symbol = regexp.MustCompile(`^( +)([-+~]) `)

// diffLines turns the text plan into lines that a diff highlighter
// colours: the highlighter reads column 0 only, so the change mark moves
// there (the indentation after it is kept), and "~" becomes "!", the
// diff language's "changed" mark (GitHub shows it in orange, next to
// the green "+" and the red "-"). Only lines after the actions heading
// move: findings above it are prose. "-/+" (replace) already starts at
// column 0 and reads as a removal, which is what a reviewer should weigh.
func diffLines(text string) []string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	actions := false
	for i, l := range lines {
		if l == "pgha will perform the following actions:" {
			actions = true
			continue
		}
		if m := symbol.FindStringSubmatch(l); actions && m != nil {
			mark := m[2]
			if mark == "~" {
				mark = "!"
			}
			lines[i] = mark + m[1] + l[len(m[0])-1:]
		}
		if lines[i] == PartSeparator {
			lines[i] = " " + l // a sentence of the plan never splits a comment
		}
	}
	return lines
}

// codeFence is a fence longer than any run of backticks in the plan (a
// setting's value may hold some), so that nothing in it closes the block.
func codeFence(lines []string) string {
	longest := 0
	for _, l := range lines {
		run := 0
		for _, r := range l {
			if r == '`' {
				run++
				longest = max(longest, run)
			} else {
				run = 0
			}
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

// code is an inline code span that holds s whatever backticks s has.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

// markdownSpecial are the characters that would turn a plan's sentence
// into markup (emphasis, links, HTML, tables, strikethrough, entities).
var markdownSpecial = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", `*`, `\*`, `_`, `\_`, `[`, `\[`, `]`, `\]`,
	`<`, `\<`, `>`, `\>`, `|`, `\|`, `~`, `\~`, `&`, `\&`,
)

// oneLine keeps a sentence inside the line its markup (a heading, a bold
// list item) opens and closes.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// escape makes s read as text in Markdown.
func escape(s string) string { return markdownSpecial.Replace(s) }

// cutLine shortens a plan line that alone exceeds a comment, at a rune
// boundary.
func cutLine(l string, n int) string {
	const more = " …"
	n -= len(more)
	for n > 0 && !utf8.RuneStart(l[n]) {
		n--
	}
	return l[:max(n, 0)] + more
}

// cut shortens prose that exceeds a comment at a line boundary; every
// block of the header is a line or ends with one, so none is left open.
func cut(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	const note = "\n_(cut: the findings exceed one comment; run `pgha show` for all of them)_\n"
	s = s[:limit-len(note)]
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i+1]
	}
	return s + note
}
