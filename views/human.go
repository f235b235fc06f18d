package views

import (
	"time"

	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/report"
	"github.com/pgha/pgha/state"
)

// Human is the text operators read: Terraform's plan, one progress line
// per action, executors' notes indented under it, tables for status and
// backups. Its lines are a contract of sorts too: scripts and the e2e
// tests grep them, so they change only on purpose.
type Human struct {
	mu sync.Mutex
	w  io.Writer
}

// NewHuman returns the text view writing to w.
func NewHuman(w io.Writer) *Human { return &Human{w: w} }

// Plan prints the text plan.
func (h *Human) Plan(p *plan.Plan) error {
	plan.Text(h.w, p)
	return nil
}

// PlanSaved tells how to apply exactly the saved plan.
func (h *Human) PlanSaved(planFile, clusterFile string) {
	fmt.Fprintf(h.w, "\nSaved the plan to %s. To perform exactly these actions, run:\n  pgha apply -f %s %s\n", planFile, clusterFile, planFile)
}

// Report prints an event of a running operation. Errors are not printed
// here: the command prints them to stderr, as every command does.
func (h *Human) Report(ev report.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch ev := ev.(type) {
	case report.Message:
		fmt.Fprintln(h.w, ev.Text)
	case report.PlanShown:
		plan.Text(h.w, ev.Plan)
	case report.Applying:
		fmt.Fprintln(h.w) // after the plan or the prompt
	case report.ActionDone:
		how := "done in"
		if ev.Err != nil {
			how = "failed after"
		}
		fmt.Fprintf(h.w, "[%d/%d] %s %s: %s %s\n", ev.Index, ev.Total, ev.Action.Change.Symbol(), ev.Action.ID, how, ev.Elapsed)
	case report.Note:
		fmt.Fprintf(h.w, "      %s\n", ev.Text)
	case report.BackupDone:
		fmt.Fprintln(h.w, ev.Summary())
	case report.Outcome:
		if ev.Err == nil && ev.Plan != nil && !ev.Plan.Empty() {
			s := ev.Plan.Summary()
			fmt.Fprintf(h.w, "\n%s complete! Actions: %d added, %d changed, %d destroyed.\n", title(ev.Operation), s.Add, s.Change, s.Destroy)
		}
	}
}

// title is an operation's name as the first word of a sentence.
func title(op string) string {
	if op == "" {
		return "Apply"
	}
	return strings.ToUpper(op[:1]) + op[1:]
}

// Status prints the cluster, its catalog, and a table of the nodes.
func (h *Human) Status(st report.Status) error {
	out := h.w
	fmt.Fprintf(out, "Cluster %s (declared primary %s)\n", st.Cluster, st.DeclaredPrimary)
	if st.RuntimeError != "" {
		fmt.Fprintf(out, "Runtime unreachable: %s\n", st.RuntimeError)
	}
	if c := st.Catalog; c != nil {
		where := "Catalog: redis " + c.Address
		if c.Kind == "etcd" {
			where = fmt.Sprintf("Authority: etcd %s (%d of %d members answering)", c.Address, c.Answering, c.Members)
		}
		switch {
		case !c.Reachable:
			fmt.Fprintf(out, "%s unreachable: %s\n", where, c.Error)
		case c.Generation > 0:
			fmt.Fprintf(out, "%s, recorded primary %s, generation %d\n", where, c.Primary, c.Generation)
		default:
			fmt.Fprintf(out, "%s, no record yet\n", where)
		}
		if c.Switching != "" {
			fmt.Fprintf(out, "Switchover under way (the catalog's intent): %s\n", c.Switching)
		}
		if c.Lock != nil {
			fmt.Fprintf(out, "Locked: %s\n", c.Lock)
		}
		if l := c.Leader; l != nil {
			fmt.Fprintf(out, "Watch leader: %s@%s pid %d, since %s\n", l.Owner, l.Host, l.PID, l.Created.UTC().Format(time.RFC3339))
		} else if c.Reachable {
			fmt.Fprintln(out, "Watch leader: none (no `pgha watch` holds the lease)")
		}
	}
	if sy := st.Synchronous; sy != nil {
		syncStatus(out, sy)
	}
	if len(st.Agents) > 0 {
		parts := make([]string, len(st.Agents))
		for i, a := range st.Agents {
			switch {
			case a.Held && a.Holder != nil:
				parts[i] = fmt.Sprintf("%s held (%s pid %d)", a.Node, a.Holder.Host, a.Holder.PID)
			case a.Held:
				parts[i] = a.Node + " held"
			default:
				parts[i] = a.Node + " none"
			}
		}
		fmt.Fprintf(out, "Agents (member leases): %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tRUNNING\tENDPOINT\tTIMELINE\tLSN\tLAG\tLAG TIME\tSLOT\tSTATE")
	for _, n := range st.Nodes {
		running := "no"
		if n.Running {
			running = "yes"
		}
		tl, lsn, lag, lagT, slot, stateS := "-", "-", "-", "-", "-", "-"
		if n.Timeline > 0 {
			tl = fmt.Sprint(n.Timeline)
		}
		if n.LSN != "" {
			lsn = n.LSN
		}
		if n.LagBytes != nil {
			lag = bytesize.Format(*n.LagBytes)
		}
		if n.LagSeconds != nil {
			lagT = fmt.Sprintf("%.1fs", *n.LagSeconds)
		}
		if n.Slot != "" {
			slot = n.Slot
		}
		switch {
		case n.Streaming:
			stateS = "streaming from " + n.Upstream
		case n.Role == "primary":
			stateS = "accepting writes"
		case n.Role == "standby":
			stateS = "not streaming"
		case n.Error != "":
			stateS = n.Error
		case !n.Running:
			stateS = "stopped"
		}
		if n.Undeclared {
			stateS = "not in cluster.hcl (`pgha apply` removes it); " + stateS
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%d\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, running, n.Host, n.Port, tl, lsn, lag, lagT, slot, stateS)
	}
	return tw.Flush()
}

// syncStatus prints the synchronous replication lines of the status.
func syncStatus(out io.Writer, sy *plan.SyncStatus) {
	setting := "'" + sy.Setting + "'"
	if sy.Setting == "" {
		setting = "'' (asynchronous)"
	}
	recorded := "none (no failover without -force)"
	switch {
	case sy.Relaxed:
		recorded = "relaxed to asynchronous: " + sy.RelaxedWhy
	case len(sy.Recorded) > 0:
		recorded = strings.Join(sy.Recorded, ", ")
	}
	syncNow := "none"
	if len(sy.Synchronous) > 0 {
		syncNow = strings.Join(sy.Synchronous, ", ")
	}
	fmt.Fprintf(out, "Synchronous: %s = %s; synchronous now: %s; recorded set: %s\n", plan.SyncSetting, setting, syncNow, recorded)
	if sy.WritesBlocked != "" {
		fmt.Fprintf(out, "Writes blocked: %s\n", sy.WritesBlocked)
	}
}

// Backups prints a table of the backups.
func (h *Human) Backups(list []state.Backup, source string, windows []state.RecoveryWindow) error {
	if source != "catalog" {
		fmt.Fprintln(h.w, "(the catalog does not answer: read from the repository's manifests)")
	}
	tw := tabwriter.NewWriter(h.w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tPARENT\tNODE\tSTARTED\tDATABASE\tSTORED\tRATIO\tSTATUS\tVERIFIED")
	for _, b := range list {
		parent := b.Parent
		if parent == "" {
			parent = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t%s\t%s\n", b.ID, b.Type, parent, b.Node, b.Started.Format("2006-01-02 15:04:05Z"),
			bytesize.Format(b.DatabaseBytes), bytesize.Format(b.StoredBytes), 100*float64(b.StoredBytes)/float64(max(b.DatabaseBytes, 1)), b.Status,
			verified(b))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(windows) > 0 {
		fmt.Fprintln(h.w, "\nPoint-in-time restore (pgha restore -to-time | -to-lsn | -to-restore-point) reaches, per timeline:")
		for _, w := range windows {
			fmt.Fprintf(h.w, "  %s\n", w)
		}
	}
	return nil
}

// verifiedReasonMax bounds a failed verify's reason in the table (the
// last column: a long one would not shift the others); -json has it whole.
const verifiedReasonMax = 60

// verified is the VERIFIED column: the last verify's result, how and when
// ("passed restore 2026-12-01 03:00Z"), or "-" when never verified.
func verified(b state.Backup) string {
	passed, ok := b.Verified()
	if !ok {
		return "-"
	}
	when := b.VerifiedAt.UTC().Format("2006-01-02 15:04Z")
	if b.VerifySeconds > 0 {
		when += fmt.Sprintf(" in %s", time.Duration(b.VerifySeconds*float64(time.Second)).Round(100*time.Millisecond))
	}
	if passed {
		return fmt.Sprintf("passed %s %s", b.VerifyMode, when)
	}
	reason := strings.TrimPrefix(b.Verify, "failed: ")
	if r := []rune(reason); len(r) > verifiedReasonMax {
		reason = string(r[:verifiedReasonMax-1]) + "…"
	}
	return fmt.Sprintf("FAILED %s %s: %s", b.VerifyMode, when, reason)
}
