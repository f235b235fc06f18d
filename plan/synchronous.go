package plan

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// SyncSetting is the PostgreSQL parameter pgha sets on the primary from
// replication { synchronous }.
const SyncSetting = "synchronous_standby_names"

// SyncMembers are the standbys a primary lists in
// synchronous_standby_names: every other declared node, in declaration
// order (the order is the priority of mode = "priority"). A node that is
// down stays listed: under ANY n it confirms nothing and costs nothing,
// and leaving it out would need a record first (see state.SyncRecord).
func SyncMembers(c *config.Cluster, primary string) []string {
	var out []string
	for _, n := range c.Nodes {
		if n.Name != primary {
			out = append(out, n.Name)
		}
	}
	return out
}

// SyncNames is synchronous_standby_names for primary, e.g. ANY 1 (db2,
// db3); "" when the file declares no synchronous block.
func SyncNames(c *config.Cluster, primary string) string {
	sy := c.Replication.Synchronous
	if sy == nil {
		return ""
	}
	return syncNamesOf(sy.Mode, sy.Standbys, SyncMembers(c, primary))
}

func syncNamesOf(mode string, count int, members []string) string {
	if len(members) == 0 || count < 1 {
		return ""
	}
	kw := "ANY"
	if mode == config.SyncPriority {
		kw = "FIRST"
	}
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = syncIdent(m)
	}
	return fmt.Sprintf("%s %d (%s)", kw, count, strings.Join(names, ", "))
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// syncIdent quotes a node name that PostgreSQL would otherwise fold to
// lower case or not parse (db-2, DB2): standbys' application_name is
// their node name exactly.
func syncIdent(s string) string {
	if plainIdent.MatchString(s) {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// PrimarySyncNames is what a primary's pgha.conf gets when it is written
// outside a synchronous transition (a start, a promotion, another
// setting's update): "" when the file declares no synchronous block, when
// the record says the watcher relaxed it, or when synchronous replication
// was never confirmed on this cluster (rec or rec.Sync nil: a new cluster,
// whose primary must create roles before any standby exists; the plan
// turns it on once standbys stream). Otherwise the full list: a promoted
// standby asks its new standbys at once, and strict writes wait rather
// than go unprotected.
func PrimarySyncNames(c *config.Cluster, primary string, rec *state.ClusterRecord) string {
	if c.Replication.Synchronous == nil || rec == nil || rec.Sync == nil || rec.Sync.Relaxed {
		return ""
	}
	return SyncNames(c, primary)
}

// syncConfirmed counts the members whose confirmation the primary's
// commits wait for now (sync_state "sync" or "quorum").
func syncConfirmed(p *state.Node, members []string) []string {
	var out []string
	for _, r := range p.Replicas {
		if slices.Contains(members, r.ApplicationName) && r.State == "streaming" && (r.SyncState == "sync" || r.SyncState == "quorum") {
			out = append(out, r.ApplicationName)
		}
	}
	return out
}

// syncStreaming lists the members that stream from the primary.
func syncStreaming(p *state.Node, members []string) []string {
	var out []string
	for _, r := range p.Replicas {
		if slices.Contains(members, r.ApplicationName) && r.State == "streaming" {
			out = append(out, r.ApplicationName)
		}
	}
	return out
}

// SyncStatus is the synchronous replication of a primary as observed,
// for status, metrics and the plan.
type SyncStatus struct {
	Declared bool     `json:"declared"`
	Setting  string   `json:"setting"`          // the primary's synchronous_standby_names now
	Required int      `json:"required"`         // synchronous { standbys }
	Strict   bool     `json:"strict,omitempty"` // synchronous { strict }
	Members  []string `json:"members,omitempty"`
	// Streaming are the members that stream; Synchronous those the
	// primary's commits wait for now.
	Streaming   []string `json:"streaming,omitempty"`
	Synchronous []string `json:"synchronous,omitempty"`
	// Recorded is the catalog's synchronous set (what a failover may
	// promote); Relaxed and RelaxedWhy say the watcher relaxed it.
	Recorded   []string `json:"recorded,omitempty"`
	Relaxed    bool     `json:"relaxed,omitempty"`
	RelaxedWhy string   `json:"relaxed_why,omitempty"`
	// WritesBlocked says why commits on the primary wait for ever ("" when
	// they do not): the setting asks for more confirmations than there are
	// standbys streaming.
	WritesBlocked string `json:"writes_blocked,omitempty"`
}

// ObserveSync describes the synchronous replication of primary in s.
func ObserveSync(c *config.Cluster, s *state.Cluster, primary string) SyncStatus {
	st := SyncStatus{}
	p := s.Node(primary)
	if p != nil && p.Reachable {
		st.Setting = p.Settings[SyncSetting].Value
	}
	if rec := s.Catalog.Record; rec != nil && rec.Sync != nil {
		st.Recorded, st.Relaxed, st.RelaxedWhy = rec.Sync.Standbys, rec.Sync.Relaxed, rec.Sync.Reason
	}
	sy := c.Replication.Synchronous
	if sy == nil && st.Setting == "" {
		return st
	}
	if sy != nil {
		st.Declared, st.Required, st.Strict = true, sy.Standbys, sy.Strict
		st.Members = SyncMembers(c, primary)
	}
	if p == nil || !p.Reachable || p.InRecovery {
		return st
	}
	members := st.Members
	if sy == nil {
		for _, r := range p.Replicas {
			members = append(members, r.ApplicationName)
		}
	}
	st.Streaming = syncStreaming(p, members)
	st.Synchronous = syncConfirmed(p, members)
	if st.Setting != "" && sy != nil && len(st.Streaming) < sy.Standbys {
		st.WritesBlocked = fmt.Sprintf("commits on %s wait: %s = '%s' needs %d synchronous standby(s), and %s",
			primary, SyncSetting, st.Setting, sy.Standbys, streamingPhrase(st.Streaming, st.Members))
		if sy.Strict {
			st.WritesBlocked += " (strict = true: writes wait rather than go unprotected)"
		} else {
			st.WritesBlocked += " (strict = false: the watcher relaxes it to asynchronous)"
		}
	}
	return st
}

func streamingPhrase(streaming, members []string) string {
	switch len(streaming) {
	case 0:
		return fmt.Sprintf("none of %s streams", strings.Join(members, ", "))
	case 1:
		return fmt.Sprintf("only %s streams", streaming[0])
	}
	return fmt.Sprintf("only %s stream", strings.Join(streaming, ", "))
}

// synchronous keeps the primary's synchronous_standby_names and the
// catalog's synchronous set in step with replication { synchronous }, in
// the order that keeps a failover safe (state.SyncRecord): the record is
// emptied before the setting changes, and names standbys again only after
// they were seen synchronous under the new setting (the record action
// waits for that). Not strict, with fewer standbys streaming than
// required, the primary is relaxed to asynchronous (recorded, with why)
// and restored once they stream again.
//
// It plans only against a primary that runs and is recorded as such: a
// plan that starts, promotes or switches the primary leaves this to the
// next one, which sees the new primary's standbys.
func (b *builder) synchronous() {
	sy := b.c.Replication.Synchronous
	p := b.node(b.target)
	rec := b.s.Catalog.Record
	if b.failover || b.primaryUp != "" || b.switched != "" || b.primaryNew || b.actual != b.target ||
		!p.Reachable || p.Role() != state.RolePrimary || !b.c.HasAuthority() || !recordReachable(b.c, b.s) ||
		rec == nil || rec.Primary != b.target {
		return
	}
	observed, known := p.Settings[SyncSetting]
	if !known {
		return
	}
	var cur state.SyncRecord
	if rec.Sync != nil {
		cur = *rec.Sync
	}
	if sy == nil {
		// Not (or no longer) declared: asynchronous, unless the
		// operator's parameters set it themselves.
		_, own := b.c.Postgres.Parameters[SyncSetting]
		if _, nodeOwn := b.c.Node(b.target).Parameters[SyncSetting]; own || nodeOwn {
			return
		}
		var recID string
		if rec.Sync != nil {
			recID = b.syncRecord(nil, false, "replication { synchronous } is no longer declared: the catalog's synchronous set goes first, then the setting", rec)
		}
		if observed.Value != "" {
			b.syncSetting(observed.Value, "", "replication { synchronous } is not declared: commits no longer wait for standbys", recID)
		}
		return
	}
	members := SyncMembers(b.c, b.target)
	full := syncNamesOf(sy.Mode, sy.Standbys, members)
	streaming := syncStreaming(p, members)
	want, why := full, ""
	if !sy.Strict && len(streaming) < sy.Standbys {
		want = ""
		why = fmt.Sprintf("%d synchronous standby(s) required and %s (strict = false): relaxed to asynchronous so that writes go on",
			sy.Standbys, streamingPhrase(streaming, members))
	}
	switch {
	case want == "" && observed.Value != "":
		// Relax: record first (no standby is safe to promote any more),
		// then the setting.
		recID := ""
		if !cur.Relaxed || len(cur.Standbys) > 0 {
			recID = b.syncRecord(&state.SyncRecord{Mode: sy.Mode, Relaxed: true, Reason: why}, false, "relax synchronous replication: "+why, rec)
		}
		b.syncSetting(observed.Value, "", "relax synchronous replication: "+why, recID)
		b.first(recID, SettingsUpdate.id(SyncSetting))
	case want == "":
		if !cur.Relaxed || len(cur.Standbys) > 0 {
			b.syncRecord(&state.SyncRecord{Mode: sy.Mode, Relaxed: true, Reason: why}, false, "record that replication is asynchronous: "+why, rec)
		}
	case observed.Value != want:
		// A new list (enabled, restored, nodes or mode edited): empty the
		// record first if it names standbys, change the setting, wait for
		// the new set to confirm, record it.
		recID := ""
		if cur.Confirmed() {
			recID = b.syncRecord(&state.SyncRecord{Mode: sy.Mode}, false,
				fmt.Sprintf("%s changes from '%s' to '%s': the recorded synchronous set goes first", SyncSetting, observed.Value, want), rec)
		}
		reason := fmt.Sprintf("synchronous replication declared in cluster.hcl: each commit waits for %d of %s", sy.Standbys, strings.Join(members, ", "))
		switch {
		case cur.Relaxed:
			reason = fmt.Sprintf("restore synchronous replication: %s stream again (relaxed since %s: %s)",
				strings.Join(streaming, ", "), stamp(cur.Since), cur.Reason)
		case observed.Value != "":
			reason = fmt.Sprintf("the synchronous standbys of %s are %s now (cluster.hcl)", b.target, want)
		}
		setID := b.syncSetting(observed.Value, want, reason, recID)
		b.syncRecord(&state.SyncRecord{Standbys: members, Count: sy.Standbys, Mode: sy.Mode}, true,
			fmt.Sprintf("record the synchronous set once %d of %s confirm commits on %s", sy.Standbys, strings.Join(members, ", "), b.target), rec, setID)
	case !cur.Confirmed() || cur.Relaxed || cur.Count != sy.Standbys || !slices.Equal(cur.Standbys, members) || cur.Mode != sy.Mode:
		// The setting is right; the record follows once confirmed.
		confirmed := syncConfirmed(p, members)
		if len(confirmed) < sy.Standbys {
			b.syncBlocked(sy, observed.Value, streaming, members)
			return
		}
		b.syncRecord(&state.SyncRecord{Standbys: members, Count: sy.Standbys, Mode: sy.Mode}, true,
			fmt.Sprintf("%s %s commits on %s under '%s': record the synchronous set a failover may promote",
				strings.Join(confirmed, ", "), pick(len(confirmed) == 1, "confirms", "confirm"), b.target, want), rec)
	default:
		b.syncBlocked(sy, observed.Value, streaming, members)
	}
}

// first moves the actions with these IDs to the front of the plan, in
// their order: a relax runs before anything else (starting standbys waits
// for them to stream), since until it runs every write waits. They
// depend on nothing, and nothing planned before them depends on them.
func (b *builder) first(ids ...string) {
	var front, rest []Action
	for _, a := range b.p.Actions {
		if slices.Contains(ids, a.ID) {
			front = append(front, a)
		} else {
			rest = append(rest, a)
		}
	}
	b.p.Actions = append(front, rest...)
}

// syncBlocked warns when strict synchronous replication holds writes.
func (b *builder) syncBlocked(sy *config.Synchronous, setting string, streaming, members []string) {
	if setting == "" || len(streaming) >= sy.Standbys {
		return
	}
	b.diag(Warning, b.target, fmt.Sprintf("writes on %s wait for synchronous standbys", b.target),
		fmt.Sprintf("%s = '%s' needs %d synchronous standby(s), and %s; strict = %t. Commits return once enough standbys stream again.",
			SyncSetting, setting, sy.Standbys, streamingPhrase(streaming, members), sy.Strict))
}

// syncSetting plans the primary's synchronous_standby_names change.
func (b *builder) syncSetting(before, after, reason string, dependsOn ...string) string {
	a := newAction(SettingsUpdate, Update, b.target, SyncSetting, reason)
	a.Before = map[string]string{SyncSetting: quoteSetting(before)}
	a.After = map[string]string{SyncSetting: quoteSetting(after), "apply_by": "reload"}
	v := after
	a.Params = Params{SyncNames: &v}
	a.DependsOn = deps(dependsOn...)
	return b.add(a)
}

func pick(cond bool, a, b string) string {
	if cond {
		return a
	}
	return b
}

func (k Kind) id(target string) string { return fmt.Sprintf("%s[%s]", k, target) }

func quoteSetting(v string) string { return "'" + v + "'" }

// syncRecord plans the write of the catalog's synchronous set (nil: none
// any more). wait: write it only once the primary's commits wait for
// Count of its standbys under the setting that lists them.
func (b *builder) syncRecord(to *state.SyncRecord, wait bool, reason string, rec *state.ClusterRecord, dependsOn ...string) string {
	a := newAction(CatalogRecord, Update, b.target, "synchronous", reason)
	show := func(r *state.SyncRecord) string {
		switch {
		case r == nil:
			return "(none)"
		case r.Relaxed:
			return "relaxed to asynchronous"
		case !r.Confirmed():
			return "(none confirmed)"
		}
		return syncNamesOf(r.Mode, r.Count, r.Standbys)
	}
	a.Before = map[string]string{"synchronous_set": show(rec.Sync), "generation": strconv.FormatInt(rec.Generation, 10)}
	a.After = map[string]string{"synchronous_set": show(to), "generation": strconv.FormatInt(rec.Generation, 10)}
	if to != nil && to.Relaxed {
		a.After["relaxed"] = to.Reason
	}
	if wait {
		a.After["when"] = "confirmed by pg_stat_replication.sync_state"
	}
	a.Params = Params{Primary: b.target, Generation: rec.Generation, Sync: to, SyncClear: to == nil, SyncWait: wait}
	a.DependsOn = deps(dependsOn...)
	return b.add(a)
}
