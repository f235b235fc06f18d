package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/config/clusterfile"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/providers/redis"
	"github.com/pgha/pgha/state"
)

// This file holds a fake Runtime and a fake pgOps for the executors' unit
// tests. Both act on one small model of the cluster (fakeCluster), so that
// a test can assert outcomes — which node runs as primary, whose data was
// moved aside, what standby.signal says — and not only the calls made.
// The model keeps the constraints the real tools have where the executors
// depend on them: pg_rewind refuses a running target or a standby.signal,
// a clone needs an empty data directory, a diverged node does not stream.

// fakeNode is what the runtime and PostgreSQL would say about one node.
type fakeNode struct {
	data     bool     // an initialised data directory is in place
	aside    []string // data directories moved aside, oldest first
	running  bool
	standby  bool // standby.signal is present
	recovery bool // the running server is in recovery
	// diverged: its timeline forked from the primary's (a former
	// primary); it cannot stream until pg_rewind or a clone.
	diverged bool
	stuck    bool // a standby whose replay does not progress
	// budget is how long the last observation of it allowed
	// (its context's deadline, from the observation's start).
	budget time.Duration
	// summarize is summarize_wal (PostgreSQL 17), which ALTER SYSTEM
	// turns on
	summarize bool
	timeline  int
	version   int
	system    string
	lsn       state.LSN // written (primary) or replayed (standby)
	final     state.LSN // the shutdown checkpoint of a clean stop
	clean     bool      // the last stop was clean
	slots     []string
	// forkOut is what pgdata.ForkScript prints on this (stopped) node;
	// "" answers as for a node whose WAL went past any fork.
	forkOut string
	history []state.TimelineSwitch // the primary's timeline history
	// keeps is wal_keep_size as each Configure wrote it, in order;
	// keepAtRewind is the source's when pg_rewind ran against it.
	keeps        []string
	keepAtRewind string
}

// fakeCluster is the model both fakes act on, with the calls made in
// order ("rt.Stop db1 fast", "pg.Promote db2") and scripted failures,
// keyed "Op node" ("Rewind db1", "Promote db2") or, for one set of
// arguments, "Op node args" ("SetStandby db1 true").
type fakeCluster struct {
	t         *testing.T
	cfg       *config.Cluster
	nodes     map[string]*fakeNode
	calls     []string
	fail      map[string]error
	rewindOut string // what pg_rewind prints when it fails
	// onCall, when set, runs at each call, before its scripted failure
	// is returned (a test cancels the apply there).
	onCall func(call string)
	// mu orders calls made concurrently (a failover's settle observes
	// the standbys in parallel), so that go test -race passes.
	mu sync.Mutex
	// quick records ObserveOptions.Quick of each runtime observation
	// (under mu).
	quick []bool
}

func (c *fakeCluster) node(name string) *fakeNode {
	n := c.nodes[name]
	if n == nil {
		c.t.Fatalf("the fake has no node %q", name)
	}
	return n
}

// call records one call and returns the failure scripted for it, or
// the context's error when it ended: a real runtime or server fails a
// call made on a cancelled context.
func (c *fakeCluster) call(ctx context.Context, layer, op, node string, args ...string) error {
	call := strings.Join(append([]string{layer + "." + op, node}, args...), " ")
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, call)
	if c.onCall != nil {
		c.onCall(call)
	}
	if err := c.fail[strings.TrimPrefix(call, layer+".")]; err != nil {
		return err // scripted for these arguments ("SetStandby db1 true")
	}
	if err := c.fail[op+" "+node]; err != nil {
		return err
	}
	return ctx.Err()
}

// primaryRunning is the running node out of recovery, "" when none; a
// second one fails the test.
func (c *fakeCluster) primaryRunning() string {
	var names []string
	for name, n := range c.nodes {
		if n.running && !n.recovery {
			names = append(names, name)
		}
	}
	if len(names) > 1 {
		c.t.Fatalf("two primaries run: %v\ncalls:\n%s", names, c.log())
	}
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// wouldStartPrimary lists the nodes that a start by hand would bring up
// as a primary: data in place and no standby.signal.
func (c *fakeCluster) wouldStartPrimary() []string {
	var names []string
	for name, n := range c.nodes {
		if n.data && !n.standby {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func (c *fakeCluster) log() string { return "  " + strings.Join(c.calls, "\n  ") }

// index is the position of the first call that starts with prefix, -1
// when none does.
func (c *fakeCluster) index(prefix string) int {
	for i, call := range c.calls {
		if strings.HasPrefix(call, prefix) {
			return i
		}
	}
	return -1
}

func (c *fakeCluster) called(prefix string) bool { return c.index(prefix) >= 0 }

// before asserts that a call starting with first happened, and before
// any call starting with second (which must happen too).
func (c *fakeCluster) before(first, second string) {
	c.t.Helper()
	i, j := c.index(first), c.index(second)
	if i < 0 || j < 0 || i > j {
		c.t.Errorf("want %q before %q; calls:\n%s", first, second, c.log())
	}
}

// streams says whether a running standby receives WAL from the primary.
func (c *fakeCluster) streams(n *fakeNode) bool {
	return n.running && n.recovery && !n.diverged && c.primaryRunning() != ""
}

// fakeRuntime is the Runtime side of the model.
type fakeRuntime struct{ *fakeCluster }

func (r fakeRuntime) Observe(ctx context.Context, s *state.Cluster, pg func(*config.Node, *state.Node), o ObserveOptions) {
	r.call(ctx, "rt", "Observe", "")
	r.mu.Lock()
	r.quick = append(r.quick, o.Quick)
	r.mu.Unlock()
	for _, sn := range s.Nodes {
		n := r.nodes[sn.Name]
		if n == nil {
			continue
		}
		sn.DirExists, sn.Initialized, sn.StandbySignal, sn.Running = n.data, n.data, n.standby, n.running
		for _, a := range n.aside {
			sn.Aside = append(sn.Aside, state.AsideDir{Path: a, Owned: true})
		}
		if n.running {
			pg(r.cfg.Node(sn.Name), sn)
		}
	}
}

func (r fakeRuntime) CreateNode(ctx context.Context, n *config.Node) error {
	return r.call(ctx, "rt", "CreateNode", n.Name)
}

func (r fakeRuntime) Prepare(ctx context.Context, n *config.Node) error {
	return r.call(ctx, "rt", "Prepare", n.Name)
}

func (r fakeRuntime) InitDB(ctx context.Context, n *config.Node) error {
	if err := r.call(ctx, "rt", "InitDB", n.Name); err != nil {
		return err
	}
	r.node(n.Name).data = true
	return nil
}

func (r fakeRuntime) Configure(ctx context.Context, n *config.Node, settings map[string]string, hba []string) error {
	if err := r.call(ctx, "rt", "Configure", n.Name); err != nil {
		return err
	}
	fn := r.node(n.Name)
	fn.keeps = append(fn.keeps, settings["wal_keep_size"])
	return nil
}

// keep is the node's wal_keep_size as last configured.
func (n *fakeNode) keep() string {
	if len(n.keeps) == 0 {
		return ""
	}
	return n.keeps[len(n.keeps)-1]
}

func (r fakeRuntime) SetStandby(ctx context.Context, n *config.Node, on bool) error {
	if err := r.call(ctx, "rt", "SetStandby", n.Name, fmt.Sprint(on)); err != nil {
		return err
	}
	fn := r.node(n.Name)
	if !fn.data {
		return fmt.Errorf("%s has no data directory", n.Name)
	}
	fn.standby = on
	return nil
}

func (r fakeRuntime) WritePassfile(ctx context.Context, n *config.Node) error {
	return r.call(ctx, "rt", "WritePassfile", n.Name)
}

// Start brings a server up as a standby when standby.signal says so;
// a standby streams from the running primary unless it diverged.
func (r fakeRuntime) Start(ctx context.Context, n *config.Node) error {
	if err := r.call(ctx, "rt", "Start", n.Name); err != nil {
		return err
	}
	fn := r.node(n.Name)
	if !fn.data {
		return fmt.Errorf("%s: no data directory", n.Name)
	}
	fn.running, fn.recovery = true, fn.standby
	return nil
}

// Stop shuts a server down; a clean stop of a primary ends with a
// shutdown checkpoint that its streaming standbys receive.
func (r fakeRuntime) Stop(ctx context.Context, n *config.Node, mode string) error {
	if err := r.call(ctx, "rt", "Stop", n.Name, mode); err != nil {
		return err
	}
	fn := r.node(n.Name)
	if !fn.running {
		return nil
	}
	fn.clean = mode != "immediate"
	if fn.clean && !fn.recovery {
		fn.final = fn.lsn + 0x28
		for _, sn := range r.nodes {
			if r.streams(sn) && !sn.stuck {
				sn.lsn = fn.final
			}
		}
	}
	fn.running = false
	return nil
}

func (r fakeRuntime) Restart(ctx context.Context, n *config.Node) error {
	return r.call(ctx, "rt", "Restart", n.Name)
}

// Clone copies primary into n's data directory, which must be empty.
func (r fakeRuntime) Clone(ctx context.Context, n, primary *config.Node) error {
	if err := r.call(ctx, "rt", "Clone", n.Name, "from", primary.Name); err != nil {
		return err
	}
	fn, src := r.node(n.Name), r.node(primary.Name)
	if fn.data {
		return fmt.Errorf("clone %s: its data directory is not empty", n.Name)
	}
	if !src.running {
		return fmt.Errorf("clone %s: %s does not answer", n.Name, primary.Name)
	}
	fn.data, fn.standby, fn.diverged = true, false, false
	fn.timeline, fn.system, fn.lsn, fn.slots = src.timeline, src.system, src.lsn, nil
	return nil
}

func (r fakeRuntime) MarkFenced(ctx context.Context, n *config.Node) error {
	if err := r.call(ctx, "rt", "MarkFenced", n.Name); err != nil {
		return err
	}
	r.node(n.Name).standby = true
	return nil
}

func (r fakeRuntime) BaseBackup(ctx context.Context, n *config.Node, w io.Writer) (string, error) {
	if err := r.call(ctx, "rt", "BaseBackup", n.Name); err != nil {
		return "", err
	}
	if !r.node(n.Name).running {
		return "", fmt.Errorf("pg_basebackup: %s does not answer", n.Name)
	}
	_, err := fmt.Fprintf(w, "base backup of %s\n", n.Name)
	return "", err
}

func (r fakeRuntime) DumpAll(ctx context.Context, n *config.Node, w io.Writer) error {
	if err := r.call(ctx, "rt", "DumpAll", n.Name); err != nil {
		return err
	}
	if !r.node(n.Name).running {
		return fmt.Errorf("pg_dumpall: %s does not answer", n.Name)
	}
	_, err := fmt.Fprintf(w, "-- pg_dumpall of %s\n", n.Name)
	return err
}

func (r fakeRuntime) ControlData(ctx context.Context, n *config.Node) (map[string]string, error) {
	if err := r.call(ctx, "rt", "ControlData", n.Name); err != nil {
		return nil, err
	}
	fn := r.node(n.Name)
	st := "in production"
	switch {
	case fn.running:
	case fn.clean && fn.recovery:
		st = "shut down in recovery"
	case fn.clean:
		st = "shut down"
	}
	return map[string]string{"Database cluster state": st, "Latest checkpoint location": fn.final.String()}, nil
}

// ForkFacts answers with the node's forkOut; by default as for a node
// whose WAL went past any fork, so that the rejoin goes through Rewind.
func (r fakeRuntime) ForkFacts(ctx context.Context, n *config.Node, probes []string) (string, error) {
	if err := r.call(ctx, "rt", "ForkFacts", n.Name); err != nil {
		return "", err
	}
	if out := r.node(n.Name).forkOut; out != "" {
		return out, nil
	}
	return "Database cluster state: in production\n", nil
}

// Rewind resynchronises n with source. It refuses what pg_rewind
// refuses; a scripted failure prints rewindOut.
func (r fakeRuntime) Rewind(ctx context.Context, n, source *config.Node) (string, error) {
	if err := r.call(ctx, "rt", "Rewind", n.Name, "from", source.Name); err != nil {
		return r.rewindOut, err
	}
	fn, src := r.node(n.Name), r.node(source.Name)
	switch {
	case fn.running:
		return "", fmt.Errorf("pg_rewind: target server must be shut down cleanly")
	case fn.standby:
		// Its single-user crash recovery refuses standby.signal.
		return "", fmt.Errorf("pg_rewind: standby mode is not supported by single-user servers")
	case !src.running:
		return "", fmt.Errorf("pg_rewind: could not connect to server %s", source.Name)
	}
	fn.diverged, fn.timeline, fn.lsn = false, src.timeline, src.lsn
	src.keepAtRewind = src.keep()
	return "pg_rewind: Done!", nil
}

// MoveAside renames the data directory; nothing is deleted.
func (r fakeRuntime) MoveAside(ctx context.Context, n *config.Node, stamp string) (string, error) {
	if err := r.call(ctx, "rt", "MoveAside", n.Name); err != nil {
		return "", err
	}
	fn := r.node(n.Name)
	fn.running = false
	if !fn.data {
		return "", nil
	}
	aside := n.DataDir + ".aside-" + stamp
	fn.aside = append(fn.aside, aside)
	fn.data, fn.standby, fn.slots = false, false, nil
	return aside, nil
}

func (r fakeRuntime) RemoveAside(ctx context.Context, n *config.Node, path string) error {
	if err := r.call(ctx, "rt", "RemoveAside", n.Name, path); err != nil {
		return err
	}
	fn := r.node(n.Name)
	fn.aside = slices.DeleteFunc(fn.aside, func(a string) bool { return a == path })
	return nil
}

func (r fakeRuntime) Destroy(ctx context.Context, n *config.Node, keepData bool) error {
	if err := r.call(ctx, "rt", "Destroy", n.Name, fmt.Sprintf("keepData=%v", keepData)); err != nil {
		return err
	}
	fn := r.node(n.Name)
	fn.running = false
	if !keepData {
		fn.data, fn.aside = false, nil
	}
	return nil
}

func (r fakeRuntime) Replace(ctx context.Context, n *config.Node) error {
	return r.call(ctx, "rt", "Replace", n.Name)
}

func (r fakeRuntime) InstallTLS(ctx context.Context, n *config.Node, cert, key, ca []byte) error {
	return r.call(ctx, "rt", "InstallTLS", n.Name)
}

func (r fakeRuntime) InstalledTLS(ctx context.Context, n *config.Node) ([]byte, []byte, error) {
	return nil, nil, r.call(ctx, "rt", "InstalledTLS", n.Name)
}

func (r fakeRuntime) Reload(ctx context.Context, n *config.Node) error {
	return r.call(ctx, "rt", "Reload", n.Name)
}

func (r fakeRuntime) StartCatalog(ctx context.Context) error {
	return r.call(ctx, "rt", "StartCatalog", "")
}
func (r fakeRuntime) RestartCatalog(ctx context.Context) error {
	return r.call(ctx, "rt", "RestartCatalog", "")
}
func (r fakeRuntime) DestroyCatalog(ctx context.Context, keepData bool) error {
	return r.call(ctx, "rt", "DestroyCatalog", "")
}
func (r fakeRuntime) Close() {}

// fakePG is the PostgreSQL side of the model: it answers for the node
// the endpoint names, as a server that runs or does not.
type fakePG struct{ *fakeCluster }

// server is the running server ep reaches, or the error a connection
// to a stopped one gets.
func (p fakePG) server(ep postgres.Endpoint) (*fakeNode, error) {
	n := p.node(ep.Name)
	if !n.running {
		return n, fmt.Errorf("connect to %s: connection refused", ep)
	}
	return n, nil
}

func (p fakePG) Observe(ctx context.Context, ep postgres.Endpoint, sn *state.Node, roles map[string]string) {
	p.call(ctx, "pg", "Observe", ep.Name)
	n, err := p.server(ep)
	if err != nil {
		sn.Error = err.Error()
		return
	}
	if dl, ok := ctx.Deadline(); ok {
		p.mu.Lock()
		n.budget = time.Until(dl)
		p.mu.Unlock()
	}
	sn.Reachable, sn.InRecovery, sn.ServerVersion, sn.SystemID, sn.Timeline = true, n.recovery, n.version, n.system, n.timeline
	if n.recovery {
		sn.ReplayLSN, sn.ReceiveLSN = n.lsn, n.lsn
		if p.streams(n) {
			sn.Upstream = &state.Upstream{Status: "streaming"}
		}
	} else {
		sn.CurrentLSN = n.lsn
	}
	sn.History = n.history
	sn.Slots = nil
	for _, s := range n.slots {
		// A slot is active while the standby named by it streams.
		o := p.nodes[s]
		sn.Slots = append(sn.Slots, state.Slot{Name: s, Active: o != nil && p.streams(o)})
	}
}

func (p fakePG) Exec(ctx context.Context, ep postgres.Endpoint, sql string, args ...any) error {
	if err := p.call(ctx, "pg", "Exec", ep.Name, sql); err != nil {
		return err
	}
	n, err := p.server(ep)
	if err == nil && sql == "ALTER SYSTEM SET summarize_wal = on" {
		n.summarize = true // the reload that follows makes it take effect
	}
	return err
}

func (p fakePG) Setting(ctx context.Context, ep postgres.Endpoint, name string) (string, error) {
	if err := p.call(ctx, "pg", "Setting", ep.Name, name); err != nil {
		return "", err
	}
	n, err := p.server(ep)
	if err != nil {
		return "", err
	}
	switch name {
	case "summarize_wal":
		if !n.summarize {
			return "off", nil
		}
	case "wal_segment_size":
		return "16MB", nil
	case "wal_keep_size":
		return n.keep(), nil
	}
	return "on", nil
}

func (p fakePG) Reload(ctx context.Context, ep postgres.Endpoint) error {
	if err := p.call(ctx, "pg", "Reload", ep.Name); err != nil {
		return err
	}
	_, err := p.server(ep)
	return err
}

func (p fakePG) WaitReady(ctx context.Context, ep postgres.Endpoint) error {
	if err := p.call(ctx, "pg", "WaitReady", ep.Name); err != nil {
		return err
	}
	_, err := p.server(ep)
	return err
}

func (p fakePG) WaitWritable(ctx context.Context, ep postgres.Endpoint) error {
	if err := p.call(ctx, "pg", "WaitWritable", ep.Name); err != nil {
		return err
	}
	n, err := p.server(ep)
	if err == nil && n.recovery {
		err = fmt.Errorf("%s is in recovery", ep.Name)
	}
	return err
}

func (p fakePG) WaitStreaming(ctx context.Context, ep postgres.Endpoint) error {
	if err := p.call(ctx, "pg", "WaitStreaming", ep.Name); err != nil {
		return err
	}
	n, err := p.server(ep)
	if err == nil && !p.streams(n) {
		err = fmt.Errorf("%s does not stream: context deadline exceeded", ep.Name)
	}
	return err
}

func (p fakePG) Checkpoint(ctx context.Context, ep postgres.Endpoint) error {
	if err := p.call(ctx, "pg", "Checkpoint", ep.Name); err != nil {
		return err
	}
	_, err := p.server(ep)
	return err
}

// Promote ends recovery on a new timeline; standby.signal goes, as
// PostgreSQL removes it.
func (p fakePG) Promote(ctx context.Context, ep postgres.Endpoint) error {
	if err := p.call(ctx, "pg", "Promote", ep.Name); err != nil {
		return err
	}
	n, err := p.server(ep)
	if err != nil {
		return err
	}
	if n.recovery {
		n.recovery, n.standby = false, false
		n.timeline++
	}
	return nil
}

func (p fakePG) ResumeReplay(ctx context.Context, ep postgres.Endpoint) error {
	if err := p.call(ctx, "pg", "ResumeReplay", ep.Name); err != nil {
		return err
	}
	_, err := p.server(ep)
	return err
}

func (p fakePG) WaitReplayed(ctx context.Context, ep postgres.Endpoint, target state.LSN) error {
	if err := p.call(ctx, "pg", "WaitReplayed", ep.Name, target.String()); err != nil {
		return err
	}
	n, err := p.server(ep)
	if err == nil && n.lsn < target {
		err = fmt.Errorf("%s replayed up to %s of %s: %w", ep, n.lsn, target, context.DeadlineExceeded)
	}
	return err
}

func (p fakePG) EnsureRole(ctx context.Context, ep postgres.Endpoint, name, password string) error {
	if err := p.call(ctx, "pg", "EnsureRole", ep.Name, name); err != nil {
		return err
	}
	_, err := p.server(ep)
	return err
}

func (p fakePG) CreateSlot(ctx context.Context, ep postgres.Endpoint, name string) error {
	if err := p.call(ctx, "pg", "CreateSlot", ep.Name, name); err != nil {
		return err
	}
	n, err := p.server(ep)
	if err == nil && !slices.Contains(n.slots, name) {
		n.slots = append(n.slots, name)
	}
	return err
}

func (p fakePG) DropSlot(ctx context.Context, ep postgres.Endpoint, name string) error {
	if err := p.call(ctx, "pg", "DropSlot", ep.Name, name); err != nil {
		return err
	}
	n, err := p.server(ep)
	if err == nil {
		n.slots = slices.DeleteFunc(n.slots, func(s string) bool { return s == name })
	}
	return err
}

func (p fakePG) DropSlotEndingSender(ctx context.Context, ep postgres.Endpoint, name string) error {
	if err := p.call(ctx, "pg", "DropSlotEndingSender", ep.Name, name); err != nil {
		return err
	}
	n, err := p.server(ep)
	if err == nil {
		n.slots = slices.DeleteFunc(n.slots, func(s string) bool { return s == name })
	}
	return err
}

func (p fakePG) AdvanceSlot(ctx context.Context, ep postgres.Endpoint, slot string, lsn state.LSN) error {
	if err := p.call(ctx, "pg", "AdvanceSlot", ep.Name, slot, lsn.String()); err != nil {
		return err
	}
	_, err := p.server(ep)
	return err
}

func (p fakePG) RestorePoint(ctx context.Context, ep postgres.Endpoint, name string) (state.LSN, error) {
	if err := p.call(ctx, "pg", "RestorePoint", ep.Name); err != nil {
		return 0, err
	}
	n, err := p.server(ep)
	if err != nil {
		return 0, err
	}
	if n.recovery {
		return 0, fmt.Errorf("recovery is in progress: WAL control functions cannot be executed during recovery")
	}
	n.lsn += 0x1000
	return n.lsn, nil
}

func (p fakePG) StreamWAL(ctx context.Context, ep postgres.Endpoint, slot string, timeline int, start state.LSN, sink postgres.WALSink) error {
	return p.call(ctx, "pg", "StreamWAL", ep.Name, "as", ep.User, "slot", slot)
}

func (p fakePG) ReceiveWAL(ctx context.Context, ep postgres.Endpoint, slot string, timeline int, start, stop state.LSN, sink func(postgres.WALSegment) error) (int, error) {
	if err := p.call(ctx, "pg", "ReceiveWAL", ep.Name, "as", ep.User, "slot", slot); err != nil {
		return 0, err
	}
	n, err := p.server(ep)
	if err != nil {
		return 0, err
	}
	if err := sink(postgres.WALSegment{Name: postgres.SegmentName(int32(n.timeline), start, 16<<20), Data: []byte("wal")}); err != nil {
		return 0, err
	}
	return n.timeline, nil
}

// BaseBackup streams a small base backup and, for PostgreSQL 17, the
// server's manifest; before 15 the server refuses the protocol.
func (p fakePG) BaseBackup(ctx context.Context, ep postgres.Endpoint, label string, w, manifest io.Writer, parent []byte) (postgres.BaseBackupResult, error) {
	if err := p.call(ctx, "pg", "BaseBackup", ep.Name, "as", ep.User, fmt.Sprintf("incremental=%v", parent != nil)); err != nil {
		return postgres.BaseBackupResult{}, err
	}
	n, err := p.server(ep)
	if err != nil {
		return postgres.BaseBackupResult{}, err
	}
	if n.version < 150000 {
		return postgres.BaseBackupResult{}, postgres.ErrOldServer
	}
	if _, err := fmt.Fprintf(w, "base backup of %s\n", ep.Name); err != nil {
		return postgres.BaseBackupResult{}, err
	}
	if n.version >= 170000 {
		fmt.Fprintf(manifest, `{"PostgreSQL-Backup-Manifest-Version": 2, "from": %q}`, ep.Name)
	}
	return postgres.BaseBackupResult{Start: n.lsn, Stop: n.lsn + 0x100, Timeline: n.timeline}, nil
}

// fakeEnv is an Env over a three-node cluster (db1, db2, db3) whose
// runtime and servers are the fake; extra is added inside the cluster
// block (a backup block) and nodeExtra inside a node's block.
func fakeEnv(t *testing.T, primary, extra string, nodeExtra map[string]string) (*Env, *fakeCluster) {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "cluster \"fake\" {\n  primary = %q\n", primary)
	b.WriteString("  postgres {\n    password = \"su-secret\"\n  }\n  replication {\n    password = \"repl-secret\"\n  }\n")
	b.WriteString("  runtime \"local\" {\n    data_dir = \"./data\"\n  }\n  tls {\n    enabled = false\n  }\n")
	for i, name := range []string{"db1", "db2", "db3"} {
		fmt.Fprintf(&b, "  node %q {\n    port = %d\n    slot = %q\n%s\n  }\n", name, 5501+i, name, nodeExtra[name])
	}
	b.WriteString(extra + "\n}\n")
	file := filepath.Join(dir, "cluster.hcl")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := clusterfile.Parse([]byte(b.String()), file)
	if r.Diags.HasErrors() {
		t.Fatalf("cluster.hcl: %v\n%s", r.Diags, b.String())
	}
	c := &fakeCluster{t: t, cfg: r.Cluster, nodes: map[string]*fakeNode{}, fail: map[string]error{}}
	for _, name := range []string{"db1", "db2", "db3"} {
		c.nodes[name] = &fakeNode{data: true, version: 160004, system: "7300000000000000001", timeline: 1, lsn: 0x3000000}
	}
	e := &Env{Cfg: r.Cluster, Runtime: fakeRuntime{c}, pg: fakePG{c}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("calls:\n%s", c.log())
		}
	})
	return e, c
}

// runAs sets the model to: primary running, the others running standbys
// streaming from it.
func (c *fakeCluster) runAs(primary string) {
	for name, n := range c.nodes {
		n.running, n.recovery, n.standby = true, name != primary, name != primary
	}
}

var errScripted = errors.New("scripted failure")

// attachCatalog binds e to the Redis catalog at addr, as Open does for a
// file with a catalog block: the store (lock, lease, record) goes with it.
func attachCatalog(e *Env, addr string) {
	e.Catalog = redis.New(addr, "", 0, e.Cfg.Name)
	e.store = redisStore{e.Catalog}
}
