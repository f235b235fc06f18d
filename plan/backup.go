package plan

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/state"
)

// backups plans what the backup block asks for: the catalog repaired from
// the repository's manifests, the backup the schedule says is due, and
// the chains retention lets go. The repository is the truth: a backup
// exists when its manifest says so, whatever the catalog recorded.
func (b *builder) backups() {
	bk := b.c.Backup
	if bk == nil || b.undecided {
		return
	}
	if b.switched != "" {
		b.switchoverBackup()
		return
	}
	if b.s.BackupsError != "" {
		hint := "check its permissions and the disk"
		if bk.IsS3() {
			hint = "check the s3 block's endpoint and keys, and that the bucket exists"
		}
		b.diag(Warning, "", "the backup repository cannot be read: "+b.s.BackupsError,
			fmt.Sprintf("pgha plans no backup until %s reads back; %s.", bk.Repository, hint))
		return
	}
	b.catalogBackups()
	now := b.s.ObservedAt
	primary := b.node(b.target)
	running := b.primaryUp == "" && primary.Role() == state.RolePrimary
	b.walArchive(primary, running)
	if !running && b.primaryUp == "" {
		return // no primary to back up; the plan's diagnostics say why
	}
	if sl := primary.Slot(config.BackupSlot); running && sl != nil && primary.CurrentLSN > sl.RestartLSN &&
		primary.CurrentLSN-sl.RestartLSN > backupSlotWarn {
		b.diag(Warning, b.target, fmt.Sprintf("slot %s holds %s of WAL on %s since %s", config.BackupSlot,
			bytesize.Format(int64(primary.CurrentLSN-sl.RestartLSN)), b.target, sl.RestartLSN),
			"It keeps the WAL the next incremental or differential backup stores, and moves on with every backup. "+
				"Backups are taken when apply runs: run it (from cron, say) so the slot moves, or remove the backup block and the slot goes.")
	}
	sch := policy.Schedule(bk.Schedule)
	if bk.Method == "logical" {
		sch.Incremental, sch.Differential = "", "" // pg_dumpall has no chains
	}
	due, err := policy.NextDue(sch, b.s.Backups, now)
	if err != nil {
		b.diag(Warning, "", err.Error(), "Fix the schedule in cluster.hcl.")
		return
	}
	if why := b.chainBreak(primary, running); why != "" && (due == nil || due.Type != "full") {
		// The next incremental could not be taken or restored: a full
		// now starts a new chain, rather than a failure at the next tick.
		reason := why + ": a full starts a new chain"
		if due != nil {
			reason += fmt.Sprintf(" instead of the %s (%s)", due.Type, due.Reason)
		}
		due = &policy.Due{Type: "full", Since: now, Reason: reason}
	}
	take := ""
	if due != nil {
		reason := due.Reason
		a := newAction(BackupTake, Create, b.target, due.Type, reason)
		a.After = map[string]string{"type": due.Type, "method": bk.Method, "compression": bk.Compression, "repository": bk.Repository}
		a.Params = Params{BackupType: due.Type}
		if due.Parent != "" {
			a.After["parent"] = due.Parent
		}
		if due.Type == "full" && bk.Source == "standby" {
			a.After["source"] = "a streaming standby"
		}
		if !due.Since.IsZero() && due.Since != now {
			a.After["due_since"] = due.Since.Format("Mon 2006-01-02 15:04 MST")
		}
		a.DependsOn = deps(b.primaryUp, b.slotIDs[config.BackupSlot])
		take = b.add(a)
	}
	expired := policy.Expired(b.s.Backups, policy.Retention{Days: bk.Retention.Days, Fulls: bk.Retention.Fulls}, now)
	walBefore, walNote := b.archiveExpiry(expired)
	for i, ch := range expired {
		a := newAction(BackupExpire, Delete, "", ch.Full.ID, ch.Reason)
		var ids []string
		var stored int64
		for _, m := range ch.Members {
			ids = append(ids, m.ID)
			stored += m.StoredBytes
		}
		a.Before = map[string]string{"backups": strings.Join(ids, ","), "count": strconv.Itoa(len(ids)), "stored": bytesize.Format(stored)}
		a.Params = Params{Backups: ids}
		if i == len(expired)-1 && walBefore != "" {
			// The newest chain expiring takes the archive's WAL before the
			// oldest chain kept with it: the older chains' WAL is before too.
			a.Before["wal"], a.Before["wal_before"] = walNote, walBefore
			a.Params.WALBefore = walBefore
		}
		a.DependsOn = deps(take) // the newer backup first: a failed one must not cost an older chain
		b.add(a)
	}
	b.drills(now, take)
}

// drills plans the restore drill the schedule says is due, and warns of
// a failed last drill, or of none where the schedule asks for them. The
// catalog's records carry the drills (the manifests hold no verifies).
func (b *builder) drills(now time.Time, take string) {
	spec := b.c.Backup.Schedule.Drill
	if spec == "" || b.c.Backup.Method == "logical" || !b.s.Catalog.Reachable {
		return
	}
	last := policy.LastDrill(b.s.Catalog.Backups)
	if last != nil {
		if passed, _ := last.Verified(); !passed {
			b.diag(Warning, "", fmt.Sprintf("the last restore drill failed (%s, backup %s): %s", last.VerifiedAt.UTC().Format("2006-01-02 15:04Z"), last.ID,
				strings.TrimPrefix(last.Verify, "failed: ")),
				"A drill restores the newest chain and the WAL archive into a scratch instance and runs amcheck: until one passes, no restore is known to work. `pgha backup drill` runs one now; `pgha backup list` shows the result.")
		}
	}
	var lastAt time.Time
	if last != nil {
		lastAt = last.VerifiedAt
	}
	since, due, err := policy.DrillDue(spec, lastAt, now)
	if err != nil {
		b.diag(Warning, "", err.Error(), "Fix the drill schedule in cluster.hcl.")
		return
	}
	if !due {
		return
	}
	if last == nil && policy.Head(b.s.Backups) != nil {
		b.diag(Warning, "", "no restore drill has run", fmt.Sprintf("The schedule asks for one (%q): `pgha watch` or apply runs it, `pgha backup drill` now.", spec))
	}
	if policy.Head(b.s.Backups) == nil && take == "" {
		return // nothing to drill yet
	}
	a := newAction(BackupDrill, Create, "", "newest", policy.DrillReason(since, last))
	a.After = map[string]string{"schedule": spec, "due_since": since.Format("Mon 2006-01-02 15:04 MST")}
	a.DependsOn = deps(take) // the newest backup is the one to drill
	b.add(a)
}

// chainBreak says why the newest chain cannot continue on primary p (""
// when it can, or when there is no chain): its newest backup is not on
// p's timeline history, or, for WAL-based incrementals, p's backup slot
// does not hold the WAL since that backup. A switchover or a failover
// alone breaks nothing: the WAL since the newest backup is read along the
// new primary's history (block-level incrementals on PostgreSQL 17 follow
// it too).
func (b *builder) chainBreak(p *state.Node, running bool) string {
	bk := b.c.Backup
	head := policy.Head(b.s.Backups)
	if bk.Method != "physical" || head == nil || head.Format == policy.FormatLogical || !running {
		return ""
	}
	if why := policy.ChainBreak(*head, p.Timeline, p.History); why != "" {
		return fmt.Sprintf("%s is primary on timeline %d%s, and %s", b.target, p.Timeline, b.since(p), why)
	}
	if !policy.WALSlot(p.ServerVersion) {
		return summaryBreak(b.target, p, *head)
	}
	stop, err := state.ParseLSN(head.StopLSN)
	if err != nil {
		return fmt.Sprintf("backup %s records no usable stop LSN (%v)", head.ID, err)
	}
	return slotBreak(b.target, p, *head, stop)
}

// slotBreak says why node n's backup slot cannot give the WAL since
// head, which stops at stop: it has none, or it holds the WAL from later.
func slotBreak(name string, n *state.Node, head state.Backup, stop state.LSN) string {
	sl := n.Slot(config.BackupSlot)
	if sl == nil {
		return fmt.Sprintf("slot %s is missing on %s, so the WAL since %s may be gone", config.BackupSlot, name, head.ID)
	}
	if sl.RestartLSN > stop {
		return fmt.Sprintf("slot %s on %s holds the WAL from %s only, %s stops at %s", config.BackupSlot, name, sl.RestartLSN, head.ID, stop)
	}
	return ""
}

// summaryBreak says why node n (PostgreSQL 17) cannot take a
// block-level incremental on head: it does not summarize the WAL, so the
// changed blocks since head cannot be known there.
func summaryBreak(name string, n *state.Node, head state.Backup) string {
	if head.Format == policy.FormatWAL || head.ServerManifest == "" {
		return ""
	}
	if st, ok := n.Settings["summarize_wal"]; ok && st.Value != "on" {
		return fmt.Sprintf("summarize_wal is off on %s, so it has no WAL summaries since %s for a block-level incremental", name, head.ID)
	}
	return ""
}

// since names the role change that put the primary on its timeline, as
// the catalog recorded it.
func (b *builder) since(p *state.Node) string {
	rec := b.s.Catalog.Record
	if rec == nil || rec.Primary != b.target || rec.Event == "" || rec.Event == "record" {
		return ""
	}
	return fmt.Sprintf(" since the %s to %s (generation %d)", rec.Event, rec.Primary, rec.Generation)
}

// switchoverBackup plans a full after a switchover or a failover whose
// new primary cannot continue the newest chain, so that the plan that
// changes the timeline leaves the cluster with backups it can extend.
// When the chain continues (the usual case), the schedule goes on as
// before.
func (b *builder) switchoverBackup() {
	bk := b.c.Backup
	head := policy.Head(b.s.Backups)
	tn := b.node(b.target)
	if bk == nil || bk.Method != "physical" || head == nil || head.Format == policy.FormatLogical || b.s.BackupsError != "" {
		return
	}
	event := "switchover"
	if b.failover {
		event = "failover"
	}
	why := policy.ChainBreak(*head, tn.Timeline, tn.History)
	stop, err := state.ParseLSN(head.StopLSN)
	if why == "" && err == nil && tn.InRecovery && head.Timeline == tn.Timeline && max(tn.ReceiveLSN, tn.ReplayLSN) < stop {
		why = fmt.Sprintf("%s received the WAL up to %s only, backup %s stops at %s", b.target, max(tn.ReceiveLSN, tn.ReplayLSN), head.ID, stop)
	}
	if why == "" && err == nil && policy.WALSlot(tn.ServerVersion) {
		why = slotBreak(b.target, tn, *head, stop)
	}
	if why == "" && !policy.WALSlot(tn.ServerVersion) {
		why = summaryBreak(b.target, tn, *head)
	}
	if why == "" {
		return
	}
	a := newAction(BackupTake, Create, b.target, "full",
		fmt.Sprintf("after the %s to %s the chain of %s cannot continue (%s): a full on the new primary starts a new chain", event, b.target, head.Root, why))
	a.After = map[string]string{"type": "full", "method": bk.Method, "compression": bk.Compression, "repository": bk.Repository}
	a.Params = Params{BackupType: "full"}
	for _, x := range b.p.Actions {
		a.DependsOn = append(a.DependsOn, x.ID)
	}
	b.add(a)
}

// backupSlotWarn is how much WAL the backup slot may hold before the plan
// says so: past it, the primary's disk pays for backups not being taken.
const backupSlotWarn = 4 << 30

// catalogBackups plans the catalog's repair: every manifest the catalog
// misses or records differently (a backup taken or expired while Redis
// was down) is copied in.
func (b *builder) catalogBackups() {
	if b.c.Catalog == nil {
		return
	}
	if !b.s.Catalog.Reachable {
		if b.c.Catalog.Managed && len(b.s.Backups) > 0 {
			// What it missed while down is known once it runs again.
			a := newAction(BackupRecord, Update, "", "*", "the catalog is down: once it runs again, every backup manifest it misses is recorded in it")
			a.DependsOn = deps(catalogStartID(b.p))
			b.add(a)
		}
		return
	}
	have := map[string]state.Backup{}
	for _, r := range b.s.Catalog.Backups {
		have[r.ID] = r
	}
	inRepo := map[string]bool{}
	for i := len(b.s.Backups) - 1; i >= 0; i-- { // oldest first
		m := b.s.Backups[i]
		inRepo[m.ID] = true
		r, ok := have[m.ID]
		switch {
		case !ok:
			a := newAction(BackupRecord, Create, "", m.ID, fmt.Sprintf("the catalog misses %s backup %s (%s), which the repository's manifest holds", m.Type, m.ID, m.Status))
			a.After = map[string]string{"status": m.Status, "type": m.Type}
			b.add(a)
		case r.Status != m.Status || r.Checksum != m.Checksum:
			a := newAction(BackupRecord, Update, "", m.ID, fmt.Sprintf("the catalog says backup %s is %s, its manifest says %s", m.ID, r.Status, m.Status))
			a.Before = map[string]string{"status": r.Status}
			a.After = map[string]string{"status": m.Status}
			b.add(a)
		}
	}
	for _, r := range b.s.Catalog.Backups {
		if !inRepo[r.ID] && r.Status == "complete" {
			b.diag(Warning, "", fmt.Sprintf("the catalog lists backup %s, which the repository does not hold", r.ID),
				fmt.Sprintf("It cannot be restored from %s. Was the repository moved or cleaned by hand?", b.c.Backup.Repository))
		}
	}
}

func catalogStartID(p *Plan) string {
	for _, a := range p.Actions {
		if a.Kind == CatalogStart {
			return a.ID
		}
	}
	return ""
}
