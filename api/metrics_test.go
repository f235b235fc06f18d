package api

import (
	"bytes"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/config/clusterfile"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/reconcile"
	"github.com/pgha/pgha/state"
)

// metricsFile is a three-node cluster with a catalog and backups.
const metricsFile = `cluster "m" {
  primary = "db1"
  postgres {
    password = "su-secret"
  }
  replication {
    password = "repl-secret"
  }
  runtime "local" {
    data_dir = "./data"
  }
  tls {
    enabled = false
  }
  node "db1" {
    port = 5441
    slot = "db1"
  }
  node "db2" {
    port = 5442
    slot = "db2"
  }
  node "db3" {
    port = 5443
    slot = "db3"
  }
  catalog "redis" {
    address = "127.0.0.1:6390"
  }
  backup {}
}
`

// metricsDay is when metricsState's first backup started.
var metricsDay = time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)

// metricsState: db1 primary at 0/3000000 with db2's slot (active, 1 MiB
// behind) and db3's (inactive, 32 MiB behind); db2 streams 1 MiB behind
// with 1.5 s of replay lag in pg_stat_replication; db3 replays 32 MiB
// behind and is not connected (no receive position, not in
// pg_stat_replication). The catalog holds a full verified by a restore,
// an incremental whose last read verify failed after one that passed
// (on another incremental), and an expired full verified later than
// both (expired: not counted as evidence).
func metricsState(at time.Time) *state.Cluster {
	day := metricsDay
	full := state.Backup{ID: "f1", Type: "full", Status: "complete", Started: day, Finished: day.Add(90 * time.Second),
		DatabaseBytes: 1 << 30, StoredBytes: 256 << 20, VerifiedAt: day.Add(time.Hour), Verify: "passed", VerifyMode: state.VerifyRestore}
	i1 := state.Backup{ID: "i1", Type: "incremental", Status: "complete", Parent: "f1", Started: day.Add(24 * time.Hour),
		Finished: day.Add(24*time.Hour + 5*time.Second), DatabaseBytes: 48 << 20, StoredBytes: 12 << 20,
		VerifiedAt: day.Add(25 * time.Hour), Verify: "passed", VerifyMode: state.VerifyRead}
	i2 := state.Backup{ID: "i2", Type: "incremental", Status: "complete", Parent: "i1", Started: day.Add(48 * time.Hour),
		Finished: day.Add(48*time.Hour + 10*time.Second), DatabaseBytes: 64 << 20, StoredBytes: 16 << 20,
		VerifiedAt: day.Add(49 * time.Hour), Verify: "failed: checksum mismatch", VerifyMode: state.VerifyRead}
	old := state.Backup{ID: "f0", Type: "full", Status: "expired", Started: day.Add(-7 * 24 * time.Hour),
		Finished: day.Add(-7*24*time.Hour + time.Minute), VerifiedAt: day.Add(50 * time.Hour), Verify: "failed: gone", VerifyMode: state.VerifyRestore}
	return &state.Cluster{Name: "m", ObservedAt: at, Nodes: []*state.Node{
		{Name: "db1", Running: true, Reachable: true, Timeline: 2, CurrentLSN: 0x3000000,
			Slots: []state.Slot{
				{Name: "db2", Type: "physical", Active: true, RestartLSN: 0x2f00000},
				{Name: "db3", Type: "physical", RestartLSN: 0x1000000},
				{Name: "logical1", Type: "logical", RestartLSN: 0x100},
			},
			Replicas: []state.Replica{{ApplicationName: "db2", State: "streaming", ReplayLSN: 0x2f00000, ReplayLag: 1500 * time.Millisecond}}},
		{Name: "db2", Running: true, Reachable: true, InRecovery: true, Timeline: 2, ReceiveLSN: 0x2f00000, ReplayLSN: 0x2f00000,
			Upstream: &state.Upstream{Status: "streaming", Host: "127.0.0.1", Port: 5441}},
		{Name: "db3", Running: true, Reachable: true, InRecovery: true, Timeline: 2, ReplayLSN: 0x1000000},
	}, Catalog: state.Catalog{Reachable: true, Record: &state.ClusterRecord{Primary: "db1", Generation: 7},
		Backups: []state.Backup{old, i2, i1, full}}}
}

// TestMetrics scrapes the registry of a Server over a hand-made
// observation and compares every pgha_ family with what the observation
// says: lag in bytes and seconds, roles, WAL positions, slots' retained
// WAL, backups and their verify results, the lease; then the counters
// after the Hub counted a failover's plan (and not a failed one, nor an
// apply). The exposition passes client_golang's linter and promtool's.
func TestMetrics(t *testing.T) {
	r := clusterfile.Parse([]byte(metricsFile), "cluster.hcl")
	if r.Diags.HasErrors() {
		t.Fatalf("cluster.hcl: %v", r.Diags)
	}
	c := r.Cluster
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	now := at.Add(500 * time.Millisecond)
	hub := NewHub()
	hub.Now = func() time.Time { return now }
	s := New(c, hub, slog.New(slog.DiscardHandler), "test")
	hub.Publish(&Snapshot{Cfg: c, State: metricsState(at), At: at, Leading: true})

	want := `
# HELP pgha_node_up 1 when the node's PostgreSQL answered the last observation.
# TYPE pgha_node_up gauge
pgha_node_up{node="db1"} 1
pgha_node_up{node="db2"} 1
pgha_node_up{node="db3"} 1
# HELP pgha_node_role 1 for the node's current role (primary, standby or unknown).
# TYPE pgha_node_role gauge
pgha_node_role{node="db1",role="primary"} 1
pgha_node_role{node="db1",role="standby"} 0
pgha_node_role{node="db1",role="unknown"} 0
pgha_node_role{node="db2",role="primary"} 0
pgha_node_role{node="db2",role="standby"} 1
pgha_node_role{node="db2",role="unknown"} 0
pgha_node_role{node="db3",role="primary"} 0
pgha_node_role{node="db3",role="standby"} 1
pgha_node_role{node="db3",role="unknown"} 0
# HELP pgha_node_timeline The node's timeline ID.
# TYPE pgha_node_timeline gauge
pgha_node_timeline{node="db1"} 2
pgha_node_timeline{node="db2"} 2
pgha_node_timeline{node="db3"} 2
# HELP pgha_node_wal_position_bytes WAL positions as byte offsets: current (primary), receive and replay (standby).
# TYPE pgha_node_wal_position_bytes gauge
pgha_node_wal_position_bytes{kind="current",node="db1"} 5.0331648e+07
pgha_node_wal_position_bytes{kind="receive",node="db2"} 4.9283072e+07
pgha_node_wal_position_bytes{kind="replay",node="db2"} 4.9283072e+07
pgha_node_wal_position_bytes{kind="replay",node="db3"} 1.6777216e+07
# HELP pgha_node_replication_lag_bytes How far the standby's replay is behind the primary's WAL.
# TYPE pgha_node_replication_lag_bytes gauge
pgha_node_replication_lag_bytes{node="db2"} 1.048576e+06
pgha_node_replication_lag_bytes{node="db3"} 3.3554432e+07
# HELP pgha_node_replication_lag_seconds The standby's replay lag in time, as the primary's pg_stat_replication reports it (absent while the standby is not connected to it).
# TYPE pgha_node_replication_lag_seconds gauge
pgha_node_replication_lag_seconds{node="db2"} 1.5
# HELP pgha_slot_retained_bytes WAL a physical replication slot holds back on the primary: current position minus the slot's restart_lsn.
# TYPE pgha_slot_retained_bytes gauge
pgha_slot_retained_bytes{node="db1",slot="db2"} 1.048576e+06
pgha_slot_retained_bytes{node="db1",slot="db3"} 3.3554432e+07
# HELP pgha_slot_active 1 when a physical replication slot on the primary has a receiver attached.
# TYPE pgha_slot_active gauge
pgha_slot_active{node="db1",slot="db2"} 1
pgha_slot_active{node="db1",slot="db3"} 0
# HELP pgha_leader_lease_held 1 when this watcher holds the leader lease and may act.
# TYPE pgha_leader_lease_held gauge
pgha_leader_lease_held 1
# HELP pgha_observation_age_seconds Age of the observation the API and health checks answer from.
# TYPE pgha_observation_age_seconds gauge
pgha_observation_age_seconds 0.5
# HELP pgha_catalog_up 1 when the catalog answered the last observation.
# TYPE pgha_catalog_up gauge
pgha_catalog_up 1
# HELP pgha_cluster_generation The generation of the catalog's cluster record (it grows at each role change).
# TYPE pgha_cluster_generation gauge
pgha_cluster_generation 7
# HELP pgha_backup_last_success_timestamp_seconds When the newest complete backup of the type finished (Unix time).
# TYPE pgha_backup_last_success_timestamp_seconds gauge
pgha_backup_last_success_timestamp_seconds{type="full"} {day+90s}
pgha_backup_last_success_timestamp_seconds{type="incremental"} {day+48h10s}
# HELP pgha_backup_last_stored_bytes Bytes stored (compressed) by the newest complete backup of the type.
# TYPE pgha_backup_last_stored_bytes gauge
pgha_backup_last_stored_bytes{type="full"} 2.68435456e+08
pgha_backup_last_stored_bytes{type="incremental"} 1.6777216e+07
# HELP pgha_backup_last_database_bytes Database bytes the newest complete backup of the type covers.
# TYPE pgha_backup_last_database_bytes gauge
pgha_backup_last_database_bytes{type="full"} 1.073741824e+09
pgha_backup_last_database_bytes{type="incremental"} 6.7108864e+07
# HELP pgha_backup_last_duration_seconds How long the newest complete backup of the type took.
# TYPE pgha_backup_last_duration_seconds gauge
pgha_backup_last_duration_seconds{type="full"} 90
pgha_backup_last_duration_seconds{type="incremental"} 10
# HELP pgha_backups Backups in the catalog by type and status.
# TYPE pgha_backups gauge
pgha_backups{status="complete",type="full"} 1
pgha_backups{status="complete",type="incremental"} 2
pgha_backups{status="expired",type="full"} 1
# HELP pgha_backup_last_verify_timestamp_seconds When the last verify of a complete backup of the type finished (Unix time), by mode: read (checksums, archives read back) or restore (restored, started, queried).
# TYPE pgha_backup_last_verify_timestamp_seconds gauge
pgha_backup_last_verify_timestamp_seconds{mode="read",type="incremental"} {day+49h}
pgha_backup_last_verify_timestamp_seconds{mode="restore",type="full"} {day+1h}
# HELP pgha_backup_last_verify_success 1 when the last verify of a complete backup of the type (by mode) passed, 0 when it failed.
# TYPE pgha_backup_last_verify_success gauge
pgha_backup_last_verify_success{mode="read",type="incremental"} 0
pgha_backup_last_verify_success{mode="restore",type="full"} 1
# HELP pgha_backup_last_verify_success_timestamp_seconds When the last verify that passed, of a complete backup of the type (by mode), finished (Unix time).
# TYPE pgha_backup_last_verify_success_timestamp_seconds gauge
pgha_backup_last_verify_success_timestamp_seconds{mode="read",type="incremental"} {day+25h}
pgha_backup_last_verify_success_timestamp_seconds{mode="restore",type="full"} {day+1h}
`
	families := []string{"pgha_node_up", "pgha_node_role", "pgha_node_timeline", "pgha_node_wal_position_bytes",
		"pgha_node_replication_lag_bytes", "pgha_node_replication_lag_seconds", "pgha_slot_retained_bytes", "pgha_slot_active",
		"pgha_leader_lease_held", "pgha_observation_age_seconds", "pgha_catalog_up", "pgha_cluster_generation",
		"pgha_backup_last_success_timestamp_seconds", "pgha_backup_last_stored_bytes", "pgha_backup_last_database_bytes",
		"pgha_backup_last_duration_seconds", "pgha_backups", "pgha_backup_last_verify_timestamp_seconds",
		"pgha_backup_last_verify_success", "pgha_backup_last_verify_success_timestamp_seconds"}
	// Timestamps are metricsDay plus the offsets metricsState gives.
	var subst []string
	for _, d := range []string{"90s", "48h10s", "1h", "25h", "49h"} {
		off, _ := time.ParseDuration(d)
		subst = append(subst, "{day+"+d+"}", fmtFloat(unixSeconds(metricsDay.Add(off))))
	}
	want = strings.NewReplacer(subst...).Replace(want)
	if err := testutil.GatherAndCompare(s.metrics.reg, strings.NewReader(want), families...); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(s.metrics.reg, "pgha_plan_pending_actions"); err != nil || n != 1 {
		t.Errorf("pgha_plan_pending_actions: %d series (%v), want 1", n, err)
	}

	counters := func(failovers, switchovers, last float64) {
		t.Helper()
		want := `
# HELP pgha_failovers_total Failovers completed by this watcher and its API.
# TYPE pgha_failovers_total counter
pgha_failovers_total ` + fmtFloat(failovers) + `
# HELP pgha_switchovers_total Switchovers completed by this watcher and its API.
# TYPE pgha_switchovers_total counter
pgha_switchovers_total ` + fmtFloat(switchovers) + `
# HELP pgha_last_failover_timestamp_seconds When the last failover completed (Unix time); 0 when none since the watcher started.
# TYPE pgha_last_failover_timestamp_seconds gauge
pgha_last_failover_timestamp_seconds ` + fmtFloat(last) + `
`
		if err := testutil.GatherAndCompare(s.metrics.reg, strings.NewReader(want),
			"pgha_failovers_total", "pgha_switchovers_total", "pgha_last_failover_timestamp_seconds"); err != nil {
			t.Fatal(err)
		}
	}
	counters(0, 0, 0)
	failover := &plan.Plan{Actions: []plan.Action{{ID: "failover[db2]", Kind: plan.Failover, Node: "db2"}, {ID: "standby.follow[db3]", Kind: plan.StandbyFollow, Node: "db3"}}}
	hub.Ran("failover", failover, nil)
	counters(1, 0, float64(now.Unix())+0.5)
	hub.Ran("failover", failover, errFailed{})                                                               // failed: not counted
	hub.Ran("apply", &plan.Plan{Actions: []plan.Action{{ID: "node.start[db3]", Kind: plan.NodeStart}}}, nil) // no role change
	hub.Ran("switchover", &plan.Plan{Actions: []plan.Action{{ID: "switchover[db1]", Kind: plan.Switchover}}}, nil)
	counters(1, 1, float64(now.Unix())+0.5)

	// The iteration histogram is fed by the watcher.
	hub.Watcher().Iterated(250*time.Millisecond, reconcile.Outcome{})
	if n, err := testutil.GatherAndCount(s.metrics.reg, "pgha_watch_iteration_duration_seconds"); err != nil || n != 1 {
		t.Errorf("pgha_watch_iteration_duration_seconds: %d series (%v)", n, err)
	}

	problems, err := testutil.GatherAndLint(s.metrics.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	promtool(t, exposition(t, s))
}

type errFailed struct{}

func (errFailed) Error() string { return "failed" }

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// exposition is GET /metrics's body, in the text format Prometheus
// scrapes.
func exposition(t *testing.T, s *Server) []byte {
	t.Helper()
	mfs, err := s.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// promtool runs `promtool check metrics` (Debian's prometheus package)
// on an exposition.
func promtool(t *testing.T, text []byte) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed: run `make setup` (or apt-get install prometheus)")
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestArchiverMetrics: the archiver's series exist where it runs (a
// primary with archive_mode on, a standby with always), and say whether
// it fails.
func TestArchiverMetrics(t *testing.T) {
	s, _ := testServer(t, "")
	st := healthy()
	st.ObservedAt = t0.Add(time.Second)
	last := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	st.Nodes[0].Archiver = &state.Archiver{Mode: "on", ArchivedCount: 7, LastArchivedTime: last, FailedCount: 3,
		LastFailedWAL: "000000010000000000000009", LastFailedTime: last.Add(time.Minute)}
	st.Nodes[1].Archiver = &state.Archiver{Mode: "always", ArchivedCount: 2, LastArchivedTime: last}
	st.Nodes[2].Archiver = &state.Archiver{Mode: "on", FailedCount: 1, LastFailedTime: last} // a standby: not running
	s.Hub.Publish(snapOf(st))
	want := `# HELP pgha_node_archiver_failing 1 when the node's WAL archiver (archive_mode on, or always on a standby) failed after its last success (pg_stat_archiver).
# TYPE pgha_node_archiver_failing gauge
pgha_node_archiver_failing{node="db1"} 1
pgha_node_archiver_failing{node="db2"} 0
# HELP pgha_node_archiver_last_archived_timestamp_seconds When the node's WAL archiver last archived a file (Unix time).
# TYPE pgha_node_archiver_last_archived_timestamp_seconds gauge
pgha_node_archiver_last_archived_timestamp_seconds{node="db1"} ` + fmtFloat(unixSeconds(last)) + `
pgha_node_archiver_last_archived_timestamp_seconds{node="db2"} ` + fmtFloat(unixSeconds(last)) + `
`
	if err := testutil.GatherAndCompare(s.metrics.reg, strings.NewReader(want), "pgha_node_archiver_failing", "pgha_node_archiver_last_archived_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
}

// TestSyncMetrics: under replication { synchronous } with no standby
// streaming (strict), the metrics say that writes are blocked, how many
// standbys are required, confirming and recorded; once a standby
// confirms, writes are no longer blocked.
func TestSyncMetrics(t *testing.T) {
	s, _ := testServer(t, "")
	st := healthy()
	st.ObservedAt = t0.Add(time.Second)
	st.Nodes[0].Settings = map[string]state.Setting{plan.SyncSetting: {Value: "ANY 1 (db2, db3)"}}
	st.Nodes[0].Replicas = nil
	st.Catalog.Record = &state.ClusterRecord{Primary: "db1", Generation: 3,
		Sync: &state.SyncRecord{Standbys: []string{"db2", "db3"}, Count: 1, Mode: "quorum"}}
	snap := snapOf(st)
	cfg := *snap.Cfg
	cfg.Replication.Synchronous = &config.Synchronous{Standbys: 1, Mode: config.SyncQuorum, Strict: true}
	snap.Cfg = &cfg
	s.Hub.Publish(snap)
	names := []string{"pgha_writes_blocked", "pgha_synchronous_standbys", "pgha_synchronous_standbys_required", "pgha_synchronous_standbys_recorded", "pgha_synchronous_relaxed"}
	want := func(blocked, now int) string {
		return `# HELP pgha_synchronous_relaxed 1 when the watcher relaxed the primary to asynchronous (strict = false, too few standbys).
# TYPE pgha_synchronous_relaxed gauge
pgha_synchronous_relaxed 0
# HELP pgha_synchronous_standbys Standbys the primary's commits wait for now (pg_stat_replication.sync_state sync or quorum).
# TYPE pgha_synchronous_standbys gauge
pgha_synchronous_standbys ` + strconv.Itoa(now) + `
# HELP pgha_synchronous_standbys_recorded Standbys in the catalog's synchronous set: those a failover may promote (0: none, no failover without -force).
# TYPE pgha_synchronous_standbys_recorded gauge
pgha_synchronous_standbys_recorded 2
# HELP pgha_synchronous_standbys_required replication { synchronous { standbys } }: how many standbys must confirm each commit on the primary (absent when not declared).
# TYPE pgha_synchronous_standbys_required gauge
pgha_synchronous_standbys_required 1
# HELP pgha_writes_blocked 1 when commits on the primary wait for synchronous standbys that do not stream (strict = true, or until the watcher relaxes it); status says why.
# TYPE pgha_writes_blocked gauge
pgha_writes_blocked ` + strconv.Itoa(blocked) + `
`
	}
	if err := testutil.GatherAndCompare(s.metrics.reg, strings.NewReader(want(1, 0)), names...); err != nil {
		t.Fatal(err)
	}
	st2 := *st
	st2.ObservedAt = t0.Add(2 * time.Second)
	p := *st.Nodes[0]
	p.Replicas = []state.Replica{{ApplicationName: "db2", State: "streaming", SyncState: "quorum"}, {ApplicationName: "db3", State: "streaming", SyncState: "quorum"}}
	st2.Nodes = append([]*state.Node{&p}, st.Nodes[1:]...)
	snap2 := snapOf(&st2)
	snap2.Cfg = &cfg
	s.Hub.Publish(snap2)
	if err := testutil.GatherAndCompare(s.metrics.reg, strings.NewReader(want(0, 2)), names...); err != nil {
		t.Fatal(err)
	}
}

// TestArchiveMetrics: the watcher's receiver reports its durable
// position; the metrics show it, when it moved, and the lag behind the
// primary's current position on the same timeline.
func TestArchiveMetrics(t *testing.T) {
	s, _ := testServer(t, "")
	st := healthy()
	st.ObservedAt = t0.Add(time.Second)
	p := st.Nodes[0]
	flushed := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	s.Hub.SetArchive(state.ArchiveStatus{Timeline: p.Timeline, Flushed: p.CurrentLSN - 4096, FlushedAt: flushed, Node: p.Name})
	s.Hub.Publish(snapOf(st))
	want := `# HELP pgha_wal_archive_lag_bytes How far the continuous WAL archive's durable position is behind the primary's current WAL position (same timeline only).
# TYPE pgha_wal_archive_lag_bytes gauge
pgha_wal_archive_lag_bytes 4096
# HELP pgha_wal_archive_last_flush_timestamp_seconds When the continuous WAL archive's durable position last moved (Unix time).
# TYPE pgha_wal_archive_last_flush_timestamp_seconds gauge
pgha_wal_archive_last_flush_timestamp_seconds ` + fmtFloat(unixSeconds(flushed)) + `
# HELP pgha_wal_archive_position_bytes Where the continuous WAL archive is durable in the repository (byte offset), as this watcher's receiver reports it.
# TYPE pgha_wal_archive_position_bytes gauge
pgha_wal_archive_position_bytes{timeline="` + strconv.Itoa(p.Timeline) + `"} ` + fmtFloat(float64(p.CurrentLSN-4096)) + `
`
	if err := testutil.GatherAndCompare(s.metrics.reg, strings.NewReader(want), "pgha_wal_archive_lag_bytes", "pgha_wal_archive_last_flush_timestamp_seconds", "pgha_wal_archive_position_bytes"); err != nil {
		t.Fatal(err)
	}
}
