package plan

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// Build returns the plan that makes the observed cluster s match c.
//
// Actions come out in an order that respects their dependencies, so apply
// can run them one after another. Things pgha must not decide alone (a
// second writable node, a lost primary while standbys hold data) become
// diagnostics, never actions.
func Build(c *config.Cluster, s *state.Cluster) *Plan {
	b := &builder{c: c, s: s, p: newPlan(c, s, "apply")}
	if s.Network != nil && !s.Network.Exists && anyContainer(s) {
		b.diag(Warning, "", fmt.Sprintf("docker network %s is missing", s.Network.Name),
			"apply recreates it, and recreates the containers that were attached to it; their data stays on their volumes.")
	}
	b.catalog()
	b.roles()
	if b.primary() {
		if b.primaryUp == "" || b.primaryNew {
			// A stopped primary keeps its roles and slots; they are
			// planned once it can be observed again.
			b.replicationRole()
			b.slots()
		}
		for _, n := range c.Nodes {
			if n.Name != c.Primary {
				b.standby(n)
			}
		}
	}
	b.record()
	return b.p
}

func newPlan(c *config.Cluster, s *state.Cluster, op string) *Plan {
	facts := Facts(c, s)
	return &Plan{FormatVersion: FormatVersion, Cluster: c.Name, Operation: op, ConfigHash: c.Hash,
		Facts: facts, Fingerprint: Fingerprint(facts), Actions: []Action{}, Diagnostics: []Diagnostic{}}
}

type builder struct {
	c *config.Cluster
	s *state.Cluster
	p *Plan
	// primaryUp is the ID of the last action that brings the primary up,
	// "" when it is already running.
	primaryUp string
	// primaryNew: the primary is initialised by this plan.
	primaryNew bool
	roleID     string
	slotIDs    map[string]string // slot name → slot.create ID
	// blocked holds nodes that an unresolved problem keeps pgha's hands off.
	blocked map[string]bool
}

func (b *builder) add(a Action) string {
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
	cat := b.c.Catalog
	if cat == nil || b.s.Catalog.Reachable {
		return
	}
	if cat.Managed {
		a := newAction(CatalogStart, Create, "", "redis",
			fmt.Sprintf("the managed Redis catalog at %s is not running", cat.Address))
		a.After = map[string]string{"address": cat.Address, "dir": cat.DataDir, "appendonly": "yes"}
		if b.c.IsDocker() {
			a.After["dir"] = "volume " + ContainerName(b.c, "redis")
		}
		b.add(a)
		return
	}
	b.diag(Warning, "", fmt.Sprintf("the Redis catalog at %s is unreachable", cat.Address),
		fmt.Sprintf("%s. apply takes its lock in the catalog and cannot run until Redis answers; start it or fix catalog \"redis\" in %s.",
			strings.TrimSuffix(b.s.Catalog.Error, "."), b.c.File))
}

// roles looks for writable nodes that are not the declared primary: a
// switchover, failover or split brain that this plan must not paper over.
func (b *builder) roles() {
	b.blocked = map[string]bool{}
	var writable []string
	for _, n := range b.c.Nodes {
		if b.node(n.Name).Role() == state.RolePrimary {
			writable = append(writable, n.Name)
		}
	}
	if len(writable) > 1 {
		b.diag(Critical, "", "split brain: "+strings.Join(writable, " and ")+" both accept writes",
			"More than one node is a writable primary. pgha will not write to either until an operator resolves it; "+
				"stop the node that must not take writes (pg_ctl stop), then plan again.")
	}
	for _, name := range writable {
		if name != b.c.Primary {
			b.blocked[name] = true
			if len(writable) == 1 {
				b.diag(Critical, name, fmt.Sprintf("%s is the writable primary, but cluster.hcl declares %s", name, b.c.Primary),
					fmt.Sprintf("A failover or a manual promotion happened. This version of pgha does not switch roles; "+
						"set primary = %q in %s to adopt the current primary, or stop %s by hand.", name, b.c.File, name))
			}
		}
	}
}

// primary plans the declared primary up to running; it reports whether the
// rest of the cluster can be planned on top of it.
func (b *builder) primary() bool {
	cn := b.c.PrimaryNode()
	n := b.node(cn.Name)
	if b.splitBrain() {
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
	a.After = map[string]string{"image": want, "volume": ContainerName(b.c, cn.Name)}
	a.DependsOn = deps(b.primaryUp)
	id := b.add(a)
	if cn.Name == b.c.Primary {
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
	h, p := AdminEndpoint(b.c, n)
	return fmt.Sprintf("%s:%d", h, p)
}

// peer is the address other nodes reach a node at.
func (b *builder) peer(n *config.Node) string {
	h, p := PeerEndpoint(b.c, n)
	return fmt.Sprintf("%s:%d", h, p)
}

// replicationRole ensures the replication user exists with the right
// attributes and password (compared by verifier, never by value).
func (b *builder) replicationRole() {
	user := b.c.Replication.User
	n := b.node(b.c.Primary)
	target := user
	if b.primaryUp != "" {
		a := newAction(RoleEnsure, Create, b.c.Primary, target, fmt.Sprintf("replication role %s on the new primary", user))
		a.After = map[string]string{"login": "true", "replication": "true", "password": "(sensitive)"}
		a.DependsOn = deps(b.primaryUp)
		b.roleID = b.add(a)
		return
	}
	r, ok := n.Roles[user]
	var why []string
	switch {
	case !ok:
		a := newAction(RoleEnsure, Create, b.c.Primary, target, fmt.Sprintf("replication role %s does not exist on %s", user, b.c.Primary))
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
	a := newAction(RoleEnsure, Update, b.c.Primary, target, fmt.Sprintf("replication role %s %s", user, strings.Join(why, ", ")))
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
	n := b.node(b.c.Primary)
	declared := map[string]string{}
	for _, cn := range b.c.Nodes {
		if cn.Name != b.c.Primary && cn.Slot != "" {
			declared[cn.Slot] = cn.Name
		}
	}
	for _, cn := range b.c.Nodes {
		if cn.Name == b.c.Primary || cn.Slot == "" {
			continue
		}
		if b.primaryUp == "" && n.Slot(cn.Slot) != nil {
			continue
		}
		a := newAction(SlotCreate, Create, b.c.Primary, b.c.Primary+"/"+cn.Slot,
			fmt.Sprintf("%s streams through slot %s, which does not exist on primary %s", cn.Name, cn.Slot, b.c.Primary))
		a.After = map[string]string{"slot": cn.Slot, "type": "physical", "for": cn.Name}
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
		if sl.Active {
			b.diag(Warning, b.c.Primary, fmt.Sprintf("undeclared slot %s on %s is in use (pid %d)", sl.Name, b.c.Primary, sl.ActivePID),
				"It holds WAL back, but something streams through it; pgha leaves an active slot alone. Declare it on a node, or stop its client and plan again.")
			continue
		}
		a := newAction(SlotDrop, Delete, b.c.Primary, b.c.Primary+"/"+sl.Name,
			fmt.Sprintf("slot %s on %s is declared by no node and holds WAL back since %s", sl.Name, b.c.Primary, sl.RestartLSN))
		a.Before = map[string]string{"slot": sl.Name, "restart_lsn": sl.RestartLSN.String()}
		b.add(a)
	}
}

func (b *builder) standby(cn *config.Node) {
	if b.blocked[cn.Name] {
		return
	}
	n := b.node(cn.Name)
	p := b.node(b.c.Primary)
	primary := b.c.PrimaryNode()
	if !n.Initialized {
		if n.DirExists && n.RuntimeError != "" {
			b.diag(Warning, cn.Name, fmt.Sprintf("%s cannot be cloned", cn.Name), n.RuntimeError)
			return
		}
		a := newAction(StandbyClone, Create, cn.Name, cn.Name,
			fmt.Sprintf("standby %s has no data; clone it from %s", cn.Name, b.c.Primary))
		a.After = map[string]string{"source": b.peer(primary), "data_dir": cn.DataDir}
		if cn.Slot != "" {
			a.After["slot"] = cn.Slot
		}
		a.DependsOn = deps(b.primaryUp, b.roleID, b.slotIDs[cn.Slot])
		clone := b.add(a)
		start := newAction(NodeStart, Create, cn.Name, cn.Name, fmt.Sprintf("start standby %s following %s", cn.Name, b.c.Primary))
		start.After = map[string]string{"role": "standby", "endpoint": b.endpoint(cn), "upstream": b.peer(primary)}
		start.DependsOn = deps(clone)
		b.add(start)
		return
	}
	if p.SystemID != "" && n.SystemID != "" && p.SystemID != n.SystemID {
		b.diag(Critical, cn.Name, fmt.Sprintf("%s belongs to another cluster", cn.Name),
			fmt.Sprintf("Its system identifier is %s, the primary's is %s. It needs a re-clone, which discards its data; this version does not do that on its own.", n.SystemID, p.SystemID))
		return
	}
	if b.replace(cn, n) {
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
		b.diag(Warning, cn.Name, fmt.Sprintf("standby %s is running but does not answer", cn.Name), n.Error)
		return
	}
	b.follow(cn, n)
	b.settings(cn, n)
	if b.primaryUp == "" && b.slotIDs[cn.Slot] == "" && (n.Upstream == nil || n.Upstream.Status != "streaming") {
		status := "no WAL receiver"
		if n.Upstream != nil {
			status = "WAL receiver " + n.Upstream.Status
		}
		b.diag(Warning, cn.Name, fmt.Sprintf("standby %s is not streaming (%s)", cn.Name, status),
			fmt.Sprintf("See %s.", LogFile(b.c, cn)))
	}
}

// follow re-points a standby whose primary_conninfo or slot differs.
func (b *builder) follow(cn *config.Node, n *state.Node) {
	want := DesiredSettings(b.c, cn)
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
		fmt.Sprintf("standby %s should follow %s at %s%s", cn.Name, b.c.Primary, b.peer(b.c.PrimaryNode()), viaSlot(cn.Slot)))
	a.Before, a.After = before, after
	a.DependsOn = deps(b.slotIDs[cn.Slot], b.roleID)
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
	want := DesiredSettings(b.c, cn)
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
	if len(after) == 0 && len(restart) == 0 {
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
	reason := fmt.Sprintf("%s: %s differ from cluster.hcl; apply by %s", cn.Name, strings.Join(changed, ", "), how)
	if len(changed) == 0 {
		reason = fmt.Sprintf("%s: %s changed but not in effect until a restart", cn.Name, strings.Join(restart, ", "))
	}
	a := newAction(SettingsUpdate, Update, cn.Name, cn.Name, reason)
	a.Before, a.After = before, after
	a.After["apply_by"] = "reload"
	if len(restart) > 0 {
		a.After["apply_by"] = "restart"
	}
	b.add(a)
}

// record keeps the cluster record in the catalog in step with the file.
func (b *builder) record() {
	if b.c.Catalog == nil || b.splitBrain() {
		return
	}
	if !b.s.Catalog.Reachable && !b.c.Catalog.Managed {
		return
	}
	var names []string
	for _, n := range b.c.Nodes {
		names = append(names, n.Name)
	}
	rec := b.s.Catalog.Record
	if rec != nil && rec.Primary == b.c.Primary && slices.Equal(rec.Nodes, names) {
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
	if !b.s.Catalog.Reachable {
		reason = "the catalog is not running; the cluster is recorded (or its record checked) once it is"
	}
	if rec != nil {
		change = Update
		gen = rec.Generation
		if rec.Primary != b.c.Primary {
			gen++
		}
		before = map[string]string{"primary": rec.Primary, "nodes": strings.Join(rec.Nodes, ","), "generation": strconv.FormatInt(rec.Generation, 10)}
		reason = "the catalog's record of the cluster differs from cluster.hcl"
	}
	a := newAction(CatalogRecord, change, "", "cluster", reason)
	a.Before = before
	a.After = map[string]string{"primary": b.c.Primary, "nodes": strings.Join(names, ","), "generation": strconv.FormatInt(gen, 10)}
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
