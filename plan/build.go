package plan

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/state"
)

// Build returns the plan that makes the observed cluster s match c.
//
// Actions come out in an order that respects their dependencies, so apply
// can run them one after another. Things pgha must not decide alone (a
// second writable node, a lost primary while standbys hold data) become
// diagnostics, never actions.
func Build(c *config.Cluster, s *state.Cluster) *Plan { return BuildWith(c, s, Options{}) }

// RuntimeUnobserved is the summary of the critical finding of a plan
// made while the runtime could not be observed; apply fails on it.
const RuntimeUnobserved = "the runtime cannot be observed"

// Options steer Build.
type Options struct {
	// NoSwitchover keeps the current primary when it is not the declared
	// one: former primaries are rejoined to it, no role changes back
	// (`pgha failback -no-switchover`).
	NoSwitchover bool
	// DeleteRemoved deletes the data of nodes removed from cluster.hcl
	// instead of moving it aside (`-delete-removed`, never implied by
	// -auto-approve).
	DeleteRemoved bool
}

// BuildWith is Build with options.
func BuildWith(c *config.Cluster, s *state.Cluster, o Options) *Plan {
	b := &builder{c: c, s: s, p: newPlan(c, s, "apply"), target: c.Primary, deleteRemoved: o.DeleteRemoved}
	if s.RuntimeError != "" {
		// Containers and volumes that could not be listed are unknown,
		// not missing: planning node.create for them would recreate
		// what may be running, or fail half-way on the same error.
		b.diag(Critical, "", RuntimeUnobserved, s.RuntimeError+"\nNothing is planned until it answers: whether the nodes' containers and data exist is unknown.")
		return b.p
	}
	if s.Network != nil && !s.Network.Exists && anyContainer(s) {
		b.diag(Warning, "", fmt.Sprintf("docker network %s is missing", s.Network.Name),
			"apply recreates it, and recreates the containers that were attached to it; their data stays on their volumes.")
	}
	b.certificates()
	b.catalog()
	b.archivers()
	b.roles()
	if b.actual == "" && !o.NoSwitchover {
		b.resumeSwitchover()
	}
	if b.actual == "" && !b.undecided {
		b.crashedPrimary()
	}
	if b.actual != "" && b.actual != b.target && o.NoSwitchover {
		b.target = b.actual
	}
	b.staleIntent()
	if b.actual != "" && b.actual != b.target {
		if !b.switchover() {
			b.record()
			return b.p
		}
	}
	if b.primary() {
		b.removals()
		if b.primaryUp == "" || b.primaryNew || b.switched != "" {
			// A stopped primary keeps its roles and slots; they are
			// planned once it can be observed again. The role replicates,
			// so a switchover finds it on the new primary.
			if b.switched == "" {
				b.replicationRole()
			}
			b.slots()
		}
		for _, n := range c.Nodes {
			if n.Name != b.target {
				b.standby(n)
			}
		}
		b.dropReleased()
		b.backups()
	}
	b.asides()
	b.agents()
	b.record()
	b.synchronous()
	return b.p
}

// agents warns of each declared node whose agent holds no member lease
// (agent block): its primary would not stop itself when cut off, and a
// watcher that cannot fence it through its runtime would promote another
// node as soon as it is lost.
func (b *builder) agents() {
	if b.c.Agent == nil || b.s.Catalog.Members == nil {
		return
	}
	for _, cn := range b.c.Nodes {
		if _, ok := b.s.Catalog.Members[cn.Name]; ok {
			continue
		}
		b.diag(Warning, cn.Name, fmt.Sprintf("no agent holds the member lease of %s", cn.Name),
			fmt.Sprintf("The cluster declares agents (agent { self_fence = %q }), but none on %s's host reaches the catalog: `pgha agent -node %s` is not running there, or that host is cut off (its primary, if any, stops itself within self_fence).",
				b.c.Agent.SelfFence, cn.Name, cn.Name))
	}
}

func newPlan(c *config.Cluster, s *state.Cluster, op string) *Plan {
	facts := Facts(c, s)
	return &Plan{FormatVersion: FormatVersion, Cluster: c.Name, Operation: op, ConfigHash: c.Hash,
		Facts: facts, Fingerprint: Fingerprint(facts), Actions: []Action{}, Diagnostics: []Diagnostic{}}
}

type builder struct {
	// target is the primary this plan converges to: the declared one for
	// apply, the chosen candidate for a failover.
	target string
	c      *config.Cluster
	s      *state.Cluster
	p      *Plan
	// primaryUp is the ID of the last action that brings the primary up,
	// "" when it is already running.
	primaryUp string
	// primaryNew: the primary is initialised by this plan.
	primaryNew bool
	roleID     string
	slotIDs    map[string]string // slot name → slot.create ID
	// blocked holds nodes that an unresolved problem keeps pgha's hands off.
	blocked map[string]bool
	// actual is the one writable node, when there is one.
	actual string
	// switched is the switchover action's ID when this plan changes roles.
	switched string
	// rejoined maps nodes rejoined by this plan to the rejoin action.
	rejoined map[string]string
	// fenced lists nodes fenced by this plan.
	fenced []string
	// failover marks a plan made by `pgha failover`.
	failover bool
	// undecided: a split brain the catalog cannot settle; nothing is done.
	undecided bool
	// released are renamed slots, dropped after their standby follows,
	// and slots of removed nodes, dropped after the removal.
	released []released
	// resumed: actual is a stopped primary whose switchover to the target
	// was interrupted; the switchover resumes from where it stopped.
	resumed bool
	// restarted: target is the catalog's primary, not the declared one,
	// which crashed (no switchover intent); this plan starts it again.
	restarted bool
	// clearIntent says why the catalog's switchover intent is stale (no
	// switchover is under way any more): the record is written without
	// it. "" when there is none, or when it may still be finished.
	clearIntent string
	// intended: the catalog's intent names the switchover this plan
	// makes (from the writable primary to the target): one a pgha began
	// and that was interrupted before it stopped the old primary.
	intended bool
	// removed maps undeclared nodes this plan removes to the action.
	removed map[string]string
	// deleteRemoved: removed nodes lose their data (Options).
	deleteRemoved bool
}

func (b *builder) targetNode() *config.Node { return b.c.Node(b.target) }

func (b *builder) add(a Action) string {
	if a.Primary == "" && a.Kind != CatalogStart && a.Kind != CatalogRestart {
		a.Primary = b.target
	}
	b.p.Actions = append(b.p.Actions, a)
	return a.ID
}

func (b *builder) diag(sev Severity, node, summary, detail string) {
	b.p.Diagnostics = append(b.p.Diagnostics, Diagnostic{Severity: sev, Node: node, Summary: summary, Detail: detail})
}

func (b *builder) node(name string) *state.Node {
	if n := b.s.Node(name); n != nil {
		return n
	}
	return &state.Node{Name: name}
}

func deps(ids ...string) []string {
	var out []string
	for _, id := range ids {
		if id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func (b *builder) catalog() {
	b.authority()
	cat := b.c.Catalog
	if cat == nil {
		return
	}
	if b.s.Catalog.Reachable {
		b.catalogAuth()
		return
	}
	if cat.Managed {
		a := newAction(CatalogStart, Create, "", "redis",
			fmt.Sprintf("the managed Redis catalog at %s is not running", cat.Address))
		a.After = map[string]string{"address": cat.Address, "dir": cat.DataDir, "appendonly": "yes"}
		if b.c.IsDocker() {
			a.After["dir"] = "volume " + b.c.ContainerName("redis")
		}
		b.add(a)
		return
	}
	b.diag(Warning, "", fmt.Sprintf("the Redis catalog at %s is unreachable", cat.Address),
		fmt.Sprintf("%s. apply takes its lock in the catalog and cannot run until Redis answers; start it or fix catalog \"redis\" in %s.",
			strings.TrimSuffix(b.s.Catalog.Error, "."), b.c.File))
}

// authority: an etcd authority without a majority holds up every
// mutation (the lock is there); one with a member down still serves, one
// more member down and it does not: both are said.
func (b *builder) authority() {
	a, sa := b.c.Authority, b.s.Authority
	if a == nil || sa == nil {
		return
	}
	eps := strings.Join(a.Endpoints, ", ")
	switch {
	case !sa.Reachable:
		b.diag(Warning, "", fmt.Sprintf("the etcd authority (%d of %d members answering) has no majority", sa.Answering, len(a.Endpoints)),
			fmt.Sprintf("%s. apply takes its lock there and cannot run, and a watcher acts on nothing, until a majority of %s answers.",
				strings.TrimSuffix(sa.Error, "."), eps))
	case sa.Answering < len(a.Endpoints):
		b.diag(Warning, "", fmt.Sprintf("the etcd authority has %d of %d members answering", sa.Answering, len(a.Endpoints)),
			fmt.Sprintf("It serves while a majority answers; bring the others back (%s) before another one fails.", eps))
	}
}

// catalogAuth: a catalog that takes commands without a password lets
// whoever reaches it rewrite the recorded primary and generation (which
// decide fencing and split brains) or break the lock. A managed one is
// restarted with a password; an external one is the operator's to fix.
func (b *builder) catalogAuth() {
	cat := b.c.Catalog
	if !b.s.Catalog.Open {
		return
	}
	if !cat.Managed {
		b.diag(Warning, "", fmt.Sprintf("the Redis catalog at %s accepts clients without a password", cat.Address),
			"Whoever reaches it can rewrite the recorded primary and generation, which decide fencing and split brains, or break the cluster lock. "+
				"Set requirepass in its configuration and declare password = file(\"...\") or env(\"...\") in catalog \"redis\".")
		return
	}
	from := "the password declared in catalog \"redis\""
	if cat.PasswordFile != "" {
		from = "a password pgha generates into " + cat.PasswordFile + " (mode 0600)"
	}
	a := newAction(CatalogRestart, Update, "", "redis",
		fmt.Sprintf("the managed Redis catalog at %s accepts clients without a password (made by an earlier pgha, or changed by hand): restart it with %s", cat.Address, from))
	a.Before = map[string]string{"password": "none"}
	a.After = map[string]string{"password": "(sensitive)", "protected_mode": "yes"}
	b.add(a)
}

// roles finds the writable nodes. One that is not the target makes this
// plan a switchover; two or more are a split brain, resolved in favour of
// the primary the catalog records (its generation and timeline), the
// others fenced. Without a record to decide, nothing is touched.
func (b *builder) roles() {
	b.blocked = map[string]bool{}
	b.rejoined = map[string]string{}
	var writable []string
	for _, n := range b.c.Nodes {
		if b.node(n.Name).Role() == state.RolePrimary {
			writable = append(writable, n.Name)
		}
	}
	if len(writable) > 1 {
		legit := ""
		if rec := b.s.Catalog.Record; rec != nil {
			for _, w := range writable {
				if w == rec.Primary && (rec.Timeline == 0 || b.node(w).Timeline == rec.Timeline) {
					legit = w
				}
			}
		}
		if legit == "" {
			for _, w := range writable {
				b.blocked[w] = true
			}
			b.undecided = true
			b.diag(Critical, "", "split brain: "+strings.Join(writable, " and ")+" both accept writes",
				"More than one node is a writable primary and the catalog does not say which one is legitimate. pgha will not write to either; "+
					"stop the node that must not take writes (pg_ctl stop), then plan again.")
			return
		}
		var others []string
		for _, w := range writable {
			if w != legit {
				others = append(others, w)
			}
		}
		rec := b.s.Catalog.Record
		b.diag(Critical, "", "split brain: "+strings.Join(writable, " and ")+" both accept writes",
			fmt.Sprintf("The catalog (generation %d) records %s as primary on timeline %d; %s will be fenced (stopped and marked standby) and later rejoined, discarding what it wrote on its own.",
				rec.Generation, legit, rec.Timeline, strings.Join(others, ", ")))
		for _, w := range others {
			n := b.node(w)
			a := newAction(NodeFence, Update, w, w, fmt.Sprintf("%s accepts writes on timeline %d but the catalog's primary is %s (generation %d): fence it", w, n.Timeline, legit, rec.Generation))
			a.Before = map[string]string{"role": "primary", "timeline": strconv.Itoa(n.Timeline)}
			a.After = map[string]string{"role": "fenced"}
			b.add(a)
			b.fenced = append(b.fenced, w)
			b.blocked[w] = true
		}
		writable = []string{legit}
	}
	if len(writable) == 1 {
		b.actual = writable[0]
	}
}

// resumeSwitchover recognises a switchover that stopped half-way (pgha
// killed, or a watcher stopped, after it stopped the old primary and
// before the target was promoted) by the intent that every switchover
// writes into the catalog record before it stops anything: the record
// names the node it hands the primary role to (SwitchingTo). No node
// accepts writes, the primary the catalog records is stopped (or still
// stopping) with its data, and the intent's target is a running standby.
// That stopped primary is taken as the actual one, so that the plan
// finishes the switchover (the executor checks that it shut down cleanly
// and that the target replayed its last record, else it starts it again
// and switches over from the start) instead of leaving the cluster
// without a primary.
//
// Without an intent the same state is a crash (see crashedPrimary): a
// failover away from the declared primary, then the new primary killed,
// looks just like it, and taking it for a switchover lost acknowledged
// writes.
//
// The switchover resumes to the intent's target even when cluster.hcl
// now declares another primary (edited while it was interrupted): that
// target is the node that received the old primary's last WAL, and the
// interrupted executor may already have asked for its promotion, so
// promoting another node could make two primaries. Once it is primary,
// the next plan switches over to the declared one, as after any edit.
func (b *builder) resumeSwitchover() {
	rec := b.s.Catalog.Record
	if !rec.Switching() {
		return
	}
	from := rec.SwitchingFromNode()
	if rec.SwitchingTo == from || b.c.Node(from) == nil || b.c.Node(rec.SwitchingTo) == nil {
		return
	}
	// A primary still shutting down runs but no longer answers.
	old, tgt := b.node(from), b.node(rec.SwitchingTo)
	if !old.Initialized || (old.Running && old.Reachable) || old.RuntimeError != "" || !tgt.Reachable || !tgt.InRecovery {
		return
	}
	b.actual, b.resumed, b.target = from, true, rec.SwitchingTo
}

// crashedPrimary recognises the catalog's primary, when a failover made
// it another node than the declared one, stopped while no node accepts
// writes and no switchover can be resumed (no intent, or one whose
// target is not a running standby): it crashed, or was stopped by hand.
// It is started again as the primary, as a stopped declared primary is
// (a restart in place loses nothing; the watcher does this when
// failover.primary_crash = "restart", and fails over instead when it is
// "failover"); the plan after it switches over to the declared primary,
// where that is permitted. A node marked a standby (fenced, or stopped
// by a switchover that marked it before promoting) or waiting to rejoin
// is never started as a primary here.
func (b *builder) crashedPrimary() {
	rec := b.s.Catalog.Record
	if rec == nil || rec.Primary == b.target || b.c.Node(rec.Primary) == nil || slices.Contains(rec.Rejoin, rec.Primary) {
		return
	}
	old := b.node(rec.Primary)
	if !old.Initialized || old.Running || old.StandbySignal || old.RuntimeError != "" {
		return
	}
	declared := b.target
	b.target, b.restarted = rec.Primary, true
	why := "no switchover was under way (the catalog records no switchover intent)"
	detail := fmt.Sprintf("%s crashed or was stopped: it is started again as the primary, as a stopped declared primary is", rec.Primary)
	if rec.Switching() {
		why = fmt.Sprintf("the switchover to %s the catalog records (begun at %s) cannot be finished: %s is not a running standby", rec.SwitchingTo, stamp(rec.SwitchingSince), rec.SwitchingTo)
		detail = fmt.Sprintf("%s was stopped by that switchover before it was marked a standby, so %s was never asked to promote: the switchover is rolled back, %s started again as the primary", rec.Primary, rec.SwitchingTo, rec.Primary)
	}
	b.diag(Warning, rec.Primary, fmt.Sprintf("no node accepts writes: %s, the catalog's primary (generation %d), is stopped and %s", rec.Primary, rec.Generation, why),
		fmt.Sprintf("%s; once it runs, the next plan switches over to %s, the declared primary. To promote a standby instead, run `pgha failover`.", detail, declared))
}

// staleIntent finds a switchover intent that no switchover will act on
// any more: a node accepts writes (the switchover was finished, or was
// rolled back, or never stopped the old primary and this plan does not
// make that very switchover again), the recorded primary is
// started again (crashedPrimary), or the intent names a node cluster.hcl
// no longer declares. The record is written again without it, so that a
// later crash of the recorded primary is not taken for that switchover.
// An intent that may still be finished (its target is down for now) is
// kept.
func (b *builder) staleIntent() {
	rec := b.s.Catalog.Record
	if !rec.Switching() || b.resumed {
		return
	}
	switch {
	case b.actual != "" && b.actual != b.target && rec.SwitchingFromNode() == b.actual && rec.SwitchingTo == b.target:
		b.intended = true // the switchover this plan makes runs it again
	case b.actual != "":
		b.clearIntent = b.actual + " accepts writes"
	case b.restarted:
		b.clearIntent = rec.Primary + " is started again as the primary"
	case b.c.Node(rec.SwitchingTo) == nil:
		b.clearIntent = rec.SwitchingTo + " is no longer declared"
	case b.c.Node(rec.SwitchingFromNode()) == nil:
		b.clearIntent = rec.SwitchingFromNode() + " is no longer declared"
	case rec.SwitchingTo == rec.SwitchingFromNode():
		b.clearIntent = "it switches " + rec.SwitchingTo + " over to itself"
	}
}

// stamp formats an intent's time for reasons; "an unknown time" when the
// record holds none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// switchover plans the change from the actual primary to the target:
// the target first becomes a streaming standby of the actual primary if it
// is not one (rewinding a former primary), then a lossless switchover, then
// the old primary rejoins as a standby. It reports whether the rest of the
// cluster can be planned on top of it.
func (b *builder) switchover() bool {
	act, tgt := b.actual, b.target
	an, tn := b.node(act), b.node(tgt)
	tcn := b.targetNode()
	why := fmt.Sprintf("%s is the writable primary, cluster.hcl declares %s", act, tgt)
	if rec := b.s.Catalog.Record; rec != nil && rec.Primary == act {
		at := ""
		if !rec.UpdatedAt.IsZero() {
			at = " at " + rec.UpdatedAt.UTC().Format("2006-01-02 15:04:05Z")
		}
		why += fmt.Sprintf(" (the catalog recorded %s as primary%s, generation %d)", act, at, rec.Generation)
	}
	detail := "The plan makes " + tgt + " primary again; edit primary in cluster.hcl to keep " + act + ", or run `pgha failback -no-switchover`."
	if b.resumed {
		rec := b.s.Catalog.Record
		why = fmt.Sprintf("no node accepts writes: %s is stopped and the catalog (generation %d) records a switchover from it to %s begun at %s; the interrupted switchover resumes",
			act, rec.Generation, tgt, stamp(rec.SwitchingSince))
		detail = "The switchover wrote its intent into the catalog, then stopped " + act + ", and was interrupted before " + tgt + " was promoted. It is finished, so that the cluster has a primary again and loses nothing: " +
			"if " + act + " shut down cleanly, " + tgt + " is promoted once it replayed " + act + "'s last record; else " + act + " is started again and the switchover runs from the start."
		if tgt != b.c.Primary {
			detail += " cluster.hcl now declares " + b.c.Primary + ": the switchover to " + tgt + " is finished first (its promotion may already be under way), then the next plan switches over to " + b.c.Primary + "."
		}
	}
	b.diag(Warning, tgt, why, detail)
	var prep []string
	streaming := tn.Reachable && tn.InRecovery && tn.Upstream != nil && tn.Upstream.Status == "streaming"
	if b.resumed {
		streaming = true // it streamed from act until act stopped; nothing to prepare
	}
	switch {
	case streaming:
	case !tn.Initialized:
		if tn.DirExists && tn.RuntimeError != "" {
			b.diag(Critical, tgt, fmt.Sprintf("%s has no data and cannot be cloned, so it cannot become primary", tgt),
				tn.RuntimeError+". "+act+" stays primary; fix that, or declare primary = \""+act+"\".")
			return false
		}
		// A declared primary without data (lost, or moved aside by an
		// interrupted re-clone) becomes a standby of the actual primary
		// first, then takes over: one plan, nothing lost on either side.
		if tcn.Slot != "" && an.Slot(tcn.Slot) == nil {
			a := newAction(SlotCreate, Create, act, act+"/"+tcn.Slot, fmt.Sprintf("%s will stream through slot %s on %s", tgt, tcn.Slot, act))
			a.After = map[string]string{"slot": tcn.Slot, "type": "physical", "for": tgt}
			a.Params = Params{Slot: tcn.Slot}
			a.Primary = act
			prep = append(prep, b.add(a))
		}
		actNode := b.c.Node(act)
		a := newAction(StandbyClone, Create, tgt, tgt,
			fmt.Sprintf("declared primary %s has no data; clone it from %s, the writable primary, and switch over once it streams", tgt, act))
		a.After = map[string]string{"source": b.peer(actNode), "data_dir": tcn.DataDir}
		if tcn.Slot != "" {
			a.After["slot"] = tcn.Slot
		}
		a.Primary = act
		a.DependsOn = deps(prep...)
		clone := b.add(a)
		start := newAction(NodeStart, Create, tgt, tgt, fmt.Sprintf("start %s as a standby of %s until the switchover", tgt, act))
		start.After = map[string]string{"role": "standby", "endpoint": b.endpoint(tcn), "upstream": b.peer(actNode)}
		start.Primary = act
		start.DependsOn = deps(clone)
		prep = append(prep, b.add(start))
	default:
		if tcn.Slot != "" && an.Slot(tcn.Slot) == nil {
			a := newAction(SlotCreate, Create, act, act+"/"+tcn.Slot, fmt.Sprintf("%s will stream through slot %s on %s", tgt, tcn.Slot, act))
			a.After = map[string]string{"slot": tcn.Slot, "type": "physical", "for": tgt}
			a.Params = Params{Slot: tcn.Slot}
			a.Primary = act
			prep = append(prep, b.add(a))
		}
		id := b.rejoin(tcn, act, prep)
		prep = append(prep, id)
	}
	a := newAction(Switchover, Update, tgt, tgt, fmt.Sprintf("switch the primary from %s to %s without losing a committed transaction", act, tgt))
	a.Before = map[string]string{"primary": act, "timeline": strconv.Itoa(an.Timeline)}
	a.After = map[string]string{"primary": tgt, "steps": fmt.Sprintf("checkpoint %s; stop %s cleanly; wait until %s replayed its final LSN; promote %s", act, act, tgt, tgt)}
	a.Params = Params{From: act, Resume: b.resumed, Intended: b.intended}
	if b.intended {
		rec := b.s.Catalog.Record
		a.Reason += fmt.Sprintf(" (the catalog's switchover intent: begun at %s, interrupted before %s stopped; it runs again)", stamp(rec.SwitchingSince), act)
		a.Before["intent"] = fmt.Sprintf("%s -> %s since %s", act, tgt, stamp(rec.SwitchingSince))
	}
	if rec := b.s.Catalog.Record; rec != nil && !b.resumed {
		// The executor writes its intent into the record only if it is
		// still at this generation: a switchover planned before another
		// pgha changed the cluster does not start.
		a.Params.Generation = rec.Generation
		a.Before["generation"] = strconv.FormatInt(rec.Generation, 10)
		a.After["generation"] = a.Before["generation"]
	}
	if b.c.HasAuthority() && !b.resumed {
		a.After["steps"] = fmt.Sprintf("record the switchover's intent in the catalog; %s", a.After["steps"])
	}
	if b.resumed {
		a.Reason = fmt.Sprintf("finish the switchover from %s to %s begun at %s (the catalog's switchover intent), interrupted after %s stopped",
			act, tgt, stamp(b.s.Catalog.Record.SwitchingSince), act)
		a.Before = map[string]string{"primary": act, "running": "false"}
		a.After["steps"] = fmt.Sprintf("if %s shut down cleanly: wait until %s replayed its final LSN, promote %s; else start %s and switch over from the start", act, tgt, tgt, act)
	}
	a.DependsOn = deps(prep...)
	b.switched = b.add(a)
	b.primaryUp = b.switched
	return true
}

// rejoin plans a former primary (or a fenced or diverged node) back as a
// standby of primary: pg_rewind, else a re-clone.
func (b *builder) rejoin(cn *config.Node, primary string, after []string) string {
	n := b.node(cn.Name)
	reason := fmt.Sprintf("%s was a primary; rejoin it as a standby of %s with %s", cn.Name, primary, rejoinMethod(cn))
	a := newAction(StandbyRejoin, Update, cn.Name, cn.Name, reason)
	a.Before = map[string]string{"role": string(n.Role())}
	if n.Timeline > 0 {
		a.Before["timeline"] = strconv.Itoa(n.Timeline)
	}
	method := "rewind-or-reclone"
	if cn.PreventDestroy {
		method = "rewind"
	}
	a.After = map[string]string{"role": "standby", "upstream": primary, "method": method, "slots": "its own slots are dropped: only the primary keeps slots"}
	a.Params = Params{Method: method}
	if bk := b.c.Backup; bk != nil && bk.Method == "physical" && (n.ServerVersion == 0 || policy.WALSlot(n.ServerVersion)) {
		a.After["slots"] = "its own slots are dropped, except " + config.BackupSlot + ", which holds the WAL since the newest backup"
	}
	a.Primary = primary
	if b.switched == "" || cn.Name != b.actual {
		// A node that accepted writes on its own after the timelines split
		// loses them; a cleanly switched-over primary has nothing to lose.
		a.DataLoss = true
		a.Reason += "; " + b.divergence(cn.Name, n, primary)
	}
	a.DependsOn = deps(after...)
	id := b.add(a)
	b.rejoined[cn.Name] = id
	return id
}

// rejoinMethod says how a node rejoins. A re-clone replaces the data
// directory (the old one is moved aside, never deleted), which
// prevent_destroy forbids: such a node is rewound or left alone.
func rejoinMethod(cn *config.Node) string {
	if cn.PreventDestroy {
		return "pg_rewind only (prevent_destroy: no re-clone; if pg_rewind cannot work, apply stops and says why)"
	}
	return "pg_rewind (a re-clone if rewind cannot work, the old data moved aside)"
}

// primary plans the declared primary up to running; it reports whether the
// rest of the cluster can be planned on top of it.
func (b *builder) primary() bool {
	cn := b.targetNode()
	n := b.node(cn.Name)
	if b.switched != "" {
		return true // the switchover brings it up
	}
	if b.undecided {
		return false
	}
	switch {
	case !n.Initialized:
		for _, other := range b.c.Nodes {
			if o := b.node(other.Name); other.Name != cn.Name && o.Initialized {
				b.diag(Critical, cn.Name, fmt.Sprintf("primary %s has no data, but %s has", cn.Name, other.Name),
					fmt.Sprintf("Initialising an empty primary now would start a new cluster beside the data on %s. "+
						"Promote a standby (declare it as primary) or restore %s; pgha will not initialise it.", other.Name, cn.DataDir))
				return false
			}
		}
		var create string
		if !n.DirExists {
			a := newAction(NodeCreate, Create, cn.Name, cn.Name, fmt.Sprintf("data directory of %s does not exist", cn.Name))
			a.After = map[string]string{"data_dir": cn.DataDir}
			create = b.add(a)
		}
		a := newAction(PrimaryInit, Create, cn.Name, cn.Name,
			fmt.Sprintf("%s is the declared primary and its data directory is not initialised", cn.Name))
		a.After = map[string]string{"data_checksums": "on", "auth": "scram-sha-256", "superuser": b.c.Postgres.Superuser}
		a.DependsOn = deps(create)
		init := b.add(a)
		start := newAction(NodeStart, Create, cn.Name, cn.Name, fmt.Sprintf("start the new primary %s", cn.Name))
		start.After = map[string]string{"role": "primary", "endpoint": b.endpoint(cn)}
		start.DependsOn = deps(init)
		b.primaryUp = b.add(start)
		b.primaryNew = true
		return true
	case b.replace(cn, n):
		return true
	case !n.Running:
		if rec := b.s.Catalog.Record; rec != nil && rec.Primary != cn.Name && slices.Contains(rec.Rejoin, cn.Name) {
			// An interrupted rejoin leaves it stopped without standby.signal:
			// starting it as primary would fork the cluster's history.
			b.diag(Critical, cn.Name, fmt.Sprintf("declared primary %s is a former primary waiting to rejoin, and no node accepts writes", cn.Name),
				fmt.Sprintf("The catalog (generation %d) records %s as primary and %s as to be rejoined; starting %s as primary would fork the history. "+
					"Start %s (pgha then rejoins %s and switches back), or fail over with `pgha failover`.", rec.Generation, rec.Primary, cn.Name, cn.Name, rec.Primary, cn.Name))
			return false
		}
		if n.StandbySignal {
			b.diag(Critical, cn.Name, fmt.Sprintf("declared primary %s is stopped and configured as a standby", cn.Name),
				"Its data directory holds standby.signal: it was demoted or cloned as a standby. pgha will not promote it in this version.")
			return false
		}
		a := newAction(NodeStart, Update, cn.Name, cn.Name, fmt.Sprintf("primary %s is not running", cn.Name))
		a.Before = map[string]string{"running": "false"}
		a.After = map[string]string{"running": "true", "role": "primary"}
		b.primaryUp = b.add(a)
		return true
	case !n.Reachable:
		b.diag(Critical, cn.Name, fmt.Sprintf("primary %s is running but does not answer", cn.Name), n.Error)
		return false
	case n.InRecovery:
		b.diag(Critical, cn.Name, fmt.Sprintf("declared primary %s is running as a standby", cn.Name),
			"pgha does not promote in this version; nothing is planned for the standbys until the primary is writable.")
		return false
	}
	b.settings(cn, n)
	return true
}

// replace plans the recreation of a node's container whose image is not
// the declared one (docker runtime). The data stays on the node's volume.
func (b *builder) replace(cn *config.Node, n *state.Node) bool {
	if !b.c.IsDocker() || n.Container == nil || n.Container.Image == b.c.Runtime.Docker.Image {
		return false
	}
	want := b.c.Runtime.Docker.Image
	a := newAction(NodeReplace, Replace, cn.Name, cn.Name,
		fmt.Sprintf("%s runs image %s, cluster.hcl says %s; the container is recreated, the data stays on its volume", cn.Name, n.Container.Image, want))
	a.Before = map[string]string{"image": n.Container.Image}
	a.After = map[string]string{"image": want, "volume": b.c.ContainerName(cn.Name)}
	a.DependsOn = deps(b.primaryUp)
	id := b.add(a)
	if cn.Name == b.target {
		b.primaryUp = id
	}
	return true
}

func (b *builder) splitBrain() bool {
	for _, d := range b.p.Diagnostics {
		if d.Severity == Critical {
			return true
		}
	}
	return false
}

// endpoint is the address pgha reaches a node at.
func (b *builder) endpoint(n *config.Node) string {
	h, p := b.c.AdminEndpoint(n)
	return fmt.Sprintf("%s:%d", h, p)
}

// peer is the address other nodes reach a node at.
func (b *builder) peer(n *config.Node) string {
	h, p := b.c.PeerEndpoint(n)
	return fmt.Sprintf("%s:%d", h, p)
}

// replicationRole ensures the replication user exists with the right
// attributes and password (compared by verifier, never by value).
func (b *builder) replicationRole() {
	user := b.c.Replication.User
	n := b.node(b.target)
	target := user
	if b.primaryNew {
		a := newAction(RoleEnsure, Create, b.target, target, fmt.Sprintf("replication role %s on the new primary", user))
		a.After = map[string]string{"login": "true", "replication": "true", "password": "(sensitive)"}
		a.DependsOn = deps(b.primaryUp)
		b.roleID = b.add(a)
		return
	}
	r, ok := n.Roles[user]
	var why []string
	switch {
	case !ok:
		a := newAction(RoleEnsure, Create, b.target, target, fmt.Sprintf("replication role %s does not exist on %s", user, b.target))
		a.After = map[string]string{"login": "true", "replication": "true", "password": "(sensitive)"}
		b.roleID = b.add(a)
		return
	case !r.CanLogin:
		why = append(why, "cannot log in")
	}
	if ok && !r.Replication {
		why = append(why, "lacks REPLICATION")
	}
	if ok && !r.PasswordMatches {
		why = append(why, "has a password other than the declared one")
	}
	if len(why) == 0 {
		return
	}
	a := newAction(RoleEnsure, Update, b.target, target, fmt.Sprintf("replication role %s %s", user, strings.Join(why, ", ")))
	a.Before = map[string]string{"login": strconv.FormatBool(r.CanLogin), "replication": strconv.FormatBool(r.Replication)}
	a.After = map[string]string{"login": "true", "replication": "true"}
	if !r.PasswordMatches {
		a.Before["password"] = "(sensitive)"
		a.After["password"] = "(sensitive, changed)"
	}
	b.roleID = b.add(a)
}

// slots creates every declared standby slot on the primary and drops
// physical slots nobody declares, since they hold WAL back forever.
func (b *builder) slots() {
	b.slotIDs = map[string]string{}
	n := b.node(b.target)
	declared := map[string]string{}
	for _, cn := range b.c.Nodes {
		if cn.Name != b.target && cn.Slot != "" {
			declared[cn.Slot] = cn.Name
		}
	}
	// The backup slot holds WAL for WAL-based incrementals (before 17).
	// An unobserved version declares it (nothing is dropped) but creates
	// nothing: the first full backup creates it when it is needed.
	if b.c.Backup != nil && b.c.Backup.Method == "physical" && (n.ServerVersion == 0 || policy.WALSlot(n.ServerVersion)) {
		declared[config.BackupSlot] = "backups"
		if n.ServerVersion != 0 && n.Slot(config.BackupSlot) == nil {
			a := newAction(SlotCreate, Create, b.target, b.target+"/"+config.BackupSlot,
				fmt.Sprintf("incremental and differential backups store the WAL since the newest backup, which slot %s holds on primary %s", config.BackupSlot, b.target))
			a.After = map[string]string{"slot": config.BackupSlot, "type": "physical", "for": "backups"}
			a.Params = Params{Slot: config.BackupSlot}
			a.DependsOn = deps(b.primaryUp)
			b.slotIDs[config.BackupSlot] = b.add(a)
		}
	}
	// The archive slot holds the WAL the continuous archive has not
	// stored yet; the receiver streams through it.
	if b.c.Backup != nil && b.c.Backup.Archive != nil {
		declared[config.ArchiveSlot] = "archive"
		if n.ServerVersion != 0 && n.Slot(config.ArchiveSlot) == nil {
			a := newAction(SlotCreate, Create, b.target, b.target+"/"+config.ArchiveSlot,
				fmt.Sprintf("the continuous WAL archive streams through slot %s on primary %s, which keeps the WAL it has not stored yet", config.ArchiveSlot, b.target))
			a.After = map[string]string{"slot": config.ArchiveSlot, "type": "physical", "for": "archive"}
			a.Params = Params{Slot: config.ArchiveSlot}
			a.DependsOn = deps(b.primaryUp)
			b.slotIDs[config.ArchiveSlot] = b.add(a)
		}
	}
	for _, cn := range b.c.Nodes {
		if cn.Name == b.target || cn.Slot == "" {
			continue
		}
		if !b.primaryNew && n.Slot(cn.Slot) != nil {
			continue
		}
		a := newAction(SlotCreate, Create, b.target, b.target+"/"+cn.Slot,
			fmt.Sprintf("%s streams through slot %s, which does not exist on primary %s", cn.Name, cn.Slot, b.target))
		a.After = map[string]string{"slot": cn.Slot, "type": "physical", "for": cn.Name}
		a.Params = Params{Slot: cn.Slot}
		a.DependsOn = deps(b.primaryUp)
		b.slotIDs[cn.Slot] = b.add(a)
	}
	if b.primaryUp != "" {
		return
	}
	for _, sl := range n.Slots {
		if sl.Type != "physical" || declared[sl.Name] != "" {
			continue
		}
		if who := b.streamedBy(sl); sl.Active && who != "" {
			b.released = append(b.released, released{slot: sl, node: who})
			continue
		}
		if who := b.removedStream(sl); who != "" {
			b.released = append(b.released, released{slot: sl, node: who, after: b.removed[who]})
			continue
		}
		if sl.Active {
			b.diag(Warning, b.target, fmt.Sprintf("undeclared slot %s on %s is in use (pid %d)", sl.Name, b.target, sl.ActivePID),
				"It holds WAL back, but something streams through it; pgha leaves an active slot alone. Declare it on a node, or stop its client and plan again.")
			continue
		}
		reason := fmt.Sprintf("slot %s on %s is declared by no node and holds WAL back since %s", sl.Name, b.target, sl.RestartLSN)
		if sl.Name == config.BackupSlot {
			reason = fmt.Sprintf("slot %s on %s holds WAL back since %s for WAL-based backups, which this cluster does not take (no physical backup block, or PostgreSQL 17's block-level incrementals)",
				sl.Name, b.target, sl.RestartLSN)
		}
		a := newAction(SlotDrop, Delete, b.target, b.target+"/"+sl.Name, reason)
		a.Before = map[string]string{"slot": sl.Name, "restart_lsn": sl.RestartLSN.String()}
		a.Params = Params{Slot: sl.Name}
		b.add(a)
	}
}

func (b *builder) standby(cn *config.Node) {
	if b.rejoined[cn.Name] != "" {
		return
	}
	if cn.Name == b.actual && b.switched != "" {
		// The old primary follows the new one once its slot exists.
		b.rejoin(cn, b.target, []string{b.switched, b.slotIDs[cn.Slot]})
		return
	}
	if b.blocked[cn.Name] && !slices.Contains(b.fenced, cn.Name) {
		return
	}
	n := b.node(cn.Name)
	p := b.node(b.target)
	primary := b.targetNode()
	if !n.Initialized {
		if n.DirExists && n.RuntimeError != "" {
			b.diag(Critical, cn.Name, fmt.Sprintf("%s cannot be cloned", cn.Name), n.RuntimeError)
			return
		}
		a := newAction(StandbyClone, Create, cn.Name, cn.Name,
			fmt.Sprintf("standby %s has no data; clone it from %s", cn.Name, b.target))
		a.After = map[string]string{"source": b.peer(primary), "data_dir": cn.DataDir}
		if cn.Slot != "" {
			a.After["slot"] = cn.Slot
		}
		a.DependsOn = deps(b.primaryUp, b.roleID, b.slotIDs[cn.Slot])
		clone := b.add(a)
		start := newAction(NodeStart, Create, cn.Name, cn.Name, fmt.Sprintf("start standby %s following %s", cn.Name, b.target))
		start.After = map[string]string{"role": "standby", "endpoint": b.endpoint(cn), "upstream": b.peer(primary)}
		start.DependsOn = deps(clone)
		b.clonedBackupSlot(cn, b.add(start))
		return
	}
	if p.SystemID != "" && n.SystemID != "" && p.SystemID != n.SystemID {
		if cn.PreventDestroy {
			b.diag(Critical, cn.Name, fmt.Sprintf("%s belongs to another cluster, and prevent_destroy keeps its data", cn.Name),
				fmt.Sprintf("Its system identifier is %s, the primary's is %s: only a re-clone brings it back, and prevent_destroy = true forbids replacing its data. "+
					"Remove prevent_destroy from node %q in %s to let pgha re-clone it (its data is moved aside, not deleted).", n.SystemID, p.SystemID, cn.Name, b.c.File))
			return
		}
		// pg_rewind cannot work across systems: a re-clone, the old data
		// moved aside.
		b.rejoin(cn, b.target, []string{b.primaryUp, b.roleID, b.slotIDs[cn.Slot]})
		a := &b.p.Actions[len(b.p.Actions)-1]
		a.Reason = fmt.Sprintf("%s belongs to another cluster (system identifier %s, the primary's is %s); re-clone it from %s, its data moved aside", cn.Name, n.SystemID, p.SystemID, b.target)
		a.After["method"] = "reclone"
		a.Params.Method = "reclone"
		return
	}
	if b.replace(cn, n) {
		return
	}
	if b.mustRejoin(cn.Name, n) {
		b.rejoin(cn, b.target, []string{b.primaryUp, b.roleID, b.slotIDs[cn.Slot]})
		return
	}
	if why := b.standbyDiverged(n); why != "" {
		id := b.rejoin(cn, b.target, []string{b.primaryUp, b.roleID, b.slotIDs[cn.Slot]})
		a := &b.p.Actions[len(b.p.Actions)-1]
		if a.ID == id {
			a.Reason = fmt.Sprintf("standby %s %s; rejoin it to %s with %s; %s",
				cn.Name, why, b.target, rejoinMethod(cn), b.divergence(cn.Name, n, b.target))
		}
		return
	}
	if !n.Running {
		a := newAction(NodeStart, Update, cn.Name, cn.Name, fmt.Sprintf("standby %s is not running", cn.Name))
		a.Before = map[string]string{"running": "false"}
		a.After = map[string]string{"running": "true", "role": "standby", "upstream": b.peer(primary)}
		a.DependsOn = deps(b.primaryUp, b.roleID, b.slotIDs[cn.Slot])
		b.add(a)
		return
	}
	if !n.Reachable {
		b.diag(Critical, cn.Name, fmt.Sprintf("standby %s is running but does not answer", cn.Name), n.Error)
		return
	}
	b.follow(cn, n)
	b.settings(cn, n)
	b.standbySlots(cn, n)
	if b.primaryUp == "" && b.slotIDs[cn.Slot] == "" && (n.Upstream == nil || n.Upstream.Status != "streaming") {
		status := "no WAL receiver"
		if n.Upstream != nil {
			status = "WAL receiver " + n.Upstream.Status
		}
		// A standby that does not stream and that this plan does nothing
		// for (re-point, reconfigure, new certificate) is critical:
		// `plan -detailed-exitcode` is 0 only when every standby streams.
		sev := Critical
		for _, a := range b.p.Actions {
			if a.Node == cn.Name {
				sev = Warning
			}
		}
		b.diag(sev, cn.Name, fmt.Sprintf("standby %s is not streaming (%s)", cn.Name, status),
			fmt.Sprintf("See %s.", b.c.LogFile(cn)))
	}
}

// standbySlots drops the slots a standby kept from its time as primary:
// only the primary keeps slots, and a slot on a standby holds its WAL back.
// The backup slot is the exception (see standbyBackupSlot).
func (b *builder) standbySlots(cn *config.Node, n *state.Node) {
	keep := b.standbyBackupSlot(cn, n)
	for _, sl := range n.Slots {
		if sl.Type != "physical" || (keep && sl.Name == config.BackupSlot) {
			continue
		}
		if sl.Active {
			b.diag(Warning, cn.Name, fmt.Sprintf("slot %s on standby %s is in use (pid %d)", sl.Name, cn.Name, sl.ActivePID),
				"pgha keeps slots on the primary only and leaves an active slot alone.")
			continue
		}
		reason := fmt.Sprintf("slot %s on standby %s is left from its time as primary and holds WAL back since %s", sl.Name, cn.Name, sl.RestartLSN)
		if sl.Name == config.BackupSlot {
			reason = fmt.Sprintf("slot %s on standby %s holds WAL back since %s for WAL-based backups, which this cluster does not take", sl.Name, cn.Name, sl.RestartLSN)
		}
		a := newAction(SlotDrop, Delete, cn.Name, cn.Name+"/"+sl.Name, reason)
		a.Before = map[string]string{"slot": sl.Name, "restart_lsn": sl.RestartLSN.String()}
		a.Params = Params{Slot: sl.Name}
		b.add(a)
	}
}

// divergence says where n left primary's history, what rewinding it
// discards, and what the re-clone fallback would copy.
func (b *builder) divergence(name string, n *state.Node, primary string) string {
	p := b.node(primary)
	var fork *state.TimelineSwitch
	for i := range p.History {
		h := &p.History[i]
		if n.Timeline == 0 || h.Parent == n.Timeline {
			fork = h // the last matching entry: the most recent fork
		}
	}
	out := "what it wrote after the timelines diverged is discarded"
	if fork != nil {
		out = fmt.Sprintf("rewind: diverged at %s, timeline %d→%d; what %s wrote after %s is discarded", fork.SwitchLSN, fork.Parent, p.Timeline, name, fork.SwitchLSN)
		if n.Reachable && !n.InRecovery && n.CurrentLSN > fork.SwitchLSN {
			out += fmt.Sprintf(" (%s of WAL)", bytesize.Format(int64(n.CurrentLSN-fork.SwitchLSN)))
		}
	}
	if p.DatabaseBytes > 0 && !b.c.Node(name).PreventDestroy {
		out += fmt.Sprintf("; re-clone if rewind cannot work: %s", bytesize.Format(p.DatabaseBytes))
	}
	return out
}

// standbyDiverged says why a running standby can no longer follow the
// running primary: it replayed past the point where the primary's
// timeline left the standby's (a restore over the primary, or a failover
// it did not see), or it is on a timeline the primary's history does not
// hold. "" when it can follow. Only timelines decide: positions observed
// a moment apart on a busy primary would give false alarms.
func (b *builder) standbyDiverged(n *state.Node) string {
	p := b.node(b.target)
	streaming := n.Upstream != nil && n.Upstream.Status == "streaming"
	if b.switched != "" || b.primaryUp != "" || p.Role() != state.RolePrimary || !n.InRecovery || streaming ||
		p.Timeline == 0 || n.Timeline == 0 || n.Timeline == p.Timeline {
		return ""
	}
	for _, h := range p.History {
		if h.Parent == n.Timeline {
			if n.ReplayLSN > h.SwitchLSN {
				return fmt.Sprintf("replayed timeline %d to %s, past %s where %s's timeline %d left it", n.Timeline, n.ReplayLSN, h.SwitchLSN, b.target, p.Timeline)
			}
			return ""
		}
	}
	return fmt.Sprintf("is on timeline %d, which is not in the history of %s's timeline %d", n.Timeline, b.target, p.Timeline)
}

// mustRejoin says whether a node cannot simply be started as a standby:
// the catalog lists it as a former primary or still as the primary, this
// plan fences it, or it is stopped without standby.signal (it was a
// primary when it stopped).
func (b *builder) mustRejoin(name string, n *state.Node) bool {
	if slices.Contains(b.fenced, name) {
		return true
	}
	if rec := b.s.Catalog.Record; rec != nil && slices.Contains(rec.Rejoin, name) {
		return true
	}
	// A stopped node the catalog still records as primary was stopped by
	// a switchover that did not get to rejoin it (pgha killed after the
	// promotion): it keeps the slots of its time as primary, which only
	// the rejoin drops.
	if rec := b.s.Catalog.Record; rec != nil && rec.Primary == name && name != b.target && n.Initialized && !n.Running {
		return true
	}
	return n.Initialized && !n.Running && !n.StandbySignal
}

// follow re-points a standby whose primary_conninfo or slot differs.
func (b *builder) follow(cn *config.Node, n *state.Node) {
	want := DesiredSettings(b.c, cn, b.target)
	var before, after = map[string]string{}, map[string]string{}
	for _, k := range []string{"primary_conninfo", "primary_slot_name"} {
		if got := n.Settings[k].Value; got != want[k] {
			before[k], after[k] = got, want[k]
		}
	}
	if len(after) == 0 {
		return
	}
	a := newAction(StandbyFollow, Update, cn.Name, cn.Name,
		fmt.Sprintf("standby %s should follow %s at %s%s", cn.Name, b.target, b.peer(b.targetNode()), viaSlot(cn.Slot)))
	a.Before, a.After = before, after
	a.DependsOn = deps(b.primaryUp, b.slotIDs[cn.Slot], b.roleID)
	b.add(a)
}

func viaSlot(s string) string {
	if s == "" {
		return ""
	}
	return " through slot " + s
}

// settings compares desired settings with pg_settings; a change to a
// postmaster-context setting, or one already pending, needs a restart.
func (b *builder) settings(cn *config.Node, n *state.Node) {
	want := DesiredSettings(b.c, cn, b.target)
	keys := make([]string, 0, len(want))
	for k := range want {
		if k != "primary_conninfo" && k != "primary_slot_name" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	before, after := map[string]string{}, map[string]string{}
	var restart []string
	for _, k := range keys {
		got, ok := n.Settings[k]
		if !ok {
			if !strings.Contains(k, ".") {
				b.diag(Warning, cn.Name, fmt.Sprintf("%s does not know the parameter %q", cn.Name, k),
					"PostgreSQL will refuse to start with an unknown parameter; check its spelling in cluster.hcl.")
			}
			continue
		}
		if settingEqual(want[k], got.Value, got.Unit, got.VarType) {
			if got.PendingRestart {
				restart = append(restart, k)
			}
			continue
		}
		before[k], after[k] = displaySetting(got.Value, got.Unit), want[k]
		if got.Context == "postmaster" || got.Context == "internal" {
			restart = append(restart, k)
		}
	}
	hba := b.c.TLS.Enabled && n.HBAPlainTCP > 0
	if len(after) == 0 && len(restart) == 0 && !hba {
		return
	}
	how := "reload"
	if len(restart) > 0 {
		how = "restart (" + strings.Join(restart, ", ") + " needs one)"
	}
	var changed []string
	for _, k := range keys {
		if _, ok := after[k]; ok {
			changed = append(changed, k)
		}
	}
	if hba {
		// pg_hba.conf is rewritten by every settings.update; it is named
		// when it is what differs.
		changed = append(changed, "pg_hba.conf")
		before["pg_hba.conf"] = fmt.Sprintf("%d TCP lines without TLS", n.HBAPlainTCP)
		after["pg_hba.conf"] = "hostssl only"
	}
	reason := fmt.Sprintf("%s: %s differ from cluster.hcl; apply by %s", cn.Name, strings.Join(changed, ", "), how)
	if len(changed) == 0 {
		reason = fmt.Sprintf("%s: %s changed but not in effect until a restart", cn.Name, strings.Join(restart, ", "))
	}
	a := newAction(SettingsUpdate, Update, cn.Name, cn.Name, reason)
	a.Before, a.After = before, after
	a.After["apply_by"] = "reload"
	if len(restart) > 0 {
		a.After["apply_by"] = "restart"
		a.Params = Params{Restart: true}
	}
	b.add(a)
}

// record keeps the cluster record in the catalog in step with the file:
// the primary (a change is a new generation), the nodes, and the former
// primaries still to be rejoined.
func (b *builder) record() {
	if !b.c.HasAuthority() || b.undecided {
		return
	}
	if !recordReachable(b.c, b.s) && (b.c.Authority != nil || !b.c.Catalog.Managed) {
		return
	}
	var names []string
	for _, n := range b.c.Nodes {
		names = append(names, n.Name)
	}
	rec := b.s.Catalog.Record
	var rejoin []string
	if rec != nil {
		for _, r := range rec.Rejoin {
			if b.rejoined[r] == "" {
				rejoin = append(rejoin, r)
			}
		}
	}
	for _, f := range b.fenced {
		if b.rejoined[f] == "" && !slices.Contains(rejoin, f) {
			rejoin = append(rejoin, f)
		}
	}
	sort.Strings(rejoin)
	// The record names the primary this plan leaves, never one it only
	// wishes for: the target when it is (or this plan makes it) the
	// writable primary, else the node that is, else what was recorded.
	primary := b.target
	if b.actual != b.target && b.primaryUp == "" && b.switched == "" {
		switch {
		case b.actual != "":
			primary = b.actual
		case rec != nil:
			primary = rec.Primary
		default:
			return // nothing true to record yet
		}
	}
	if rec != nil && rec.Primary == primary && slices.Equal(rec.Nodes, names) && slices.Equal(rec.Rejoin, rejoin) && b.clearIntent == "" {
		return
	}
	var all []string
	for _, a := range b.p.Actions {
		all = append(all, a.ID)
	}
	gen := int64(1)
	change := Create
	var before map[string]string
	reason := "the catalog holds no record of this cluster"
	if !recordReachable(b.c, b.s) {
		reason = "the catalog is not running; the cluster is recorded (or its record checked) once it is"
	}
	event := "record"
	if rec != nil {
		change = Update
		gen = rec.Generation
		reason = "the catalog's record of the cluster differs from cluster.hcl"
		if b.clearIntent != "" && rec.Primary == primary && slices.Equal(rec.Nodes, names) && slices.Equal(rec.Rejoin, rejoin) {
			reason = fmt.Sprintf("the catalog records a switchover to %s begun at %s that is no longer under way (%s): record the cluster again without that stale intent",
				rec.SwitchingTo, stamp(rec.SwitchingSince), b.clearIntent)
		}
		if rec.Primary != primary {
			gen++
			event = "switchover"
			if b.failover {
				event = "failover"
			}
			reason = fmt.Sprintf("record the %s from %s to %s as generation %d", event, rec.Primary, primary, gen)
		}
		before = map[string]string{"primary": rec.Primary, "nodes": strings.Join(rec.Nodes, ","), "generation": strconv.FormatInt(rec.Generation, 10)}
		if len(rec.Rejoin) > 0 {
			before["rejoin"] = strings.Join(rec.Rejoin, ",")
		}
		if rec.Switching() {
			before["switching_to"] = fmt.Sprintf("%s (since %s)", rec.SwitchingTo, stamp(rec.SwitchingSince))
		}
	}
	a := newAction(CatalogRecord, change, "", "cluster", reason)
	a.Before = before
	a.After = map[string]string{"primary": primary, "nodes": strings.Join(names, ","), "generation": strconv.FormatInt(gen, 10), "event": event}
	if len(rejoin) > 0 {
		a.After["rejoin"] = strings.Join(rejoin, ",")
	}
	// The intent goes with a new primary (the switchover, or a failover,
	// is over) and when it is stale; otherwise the switchover it names
	// may still have to be finished, and it stays.
	dropIntent := rec.Switching() && (b.clearIntent != "" || rec.Primary != primary)
	if rec.Switching() && !dropIntent {
		a.After["switching_to"] = before["switching_to"]
	}
	a.Params = Params{Primary: primary, Nodes: names, Rejoin: rejoin, Event: event, ClearIntent: dropIntent}
	if rec != nil {
		// The fencing token: the record is written only if it is still
		// at the generation this plan saw (see Params.Generation).
		a.Params.Generation = rec.Generation
	}
	a.DependsOn = all
	b.add(a)
}

func anyContainer(s *state.Cluster) bool {
	for _, n := range s.Nodes {
		if n.Container != nil {
			return true
		}
	}
	return false
}

// recordReachable: the store that holds the cluster record answered (the
// etcd authority when declared, else the catalog).
func recordReachable(c *config.Cluster, s *state.Cluster) bool {
	if c.Authority != nil {
		return s.Authority != nil && s.Authority.Reachable
	}
	return s.Catalog.Reachable
}
