package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/reconcile"
	"github.com/pgha/pgha/state"
)

// metrics is GET /metrics: a collector that reads the Hub's latest
// snapshot at each scrape (so a scrape queries nothing), the operation
// counters, and the histogram of watch iterations.
type metrics struct {
	s         *Server
	reg       *prometheus.Registry
	iteration prometheus.Histogram
}

func newMetrics(s *Server) *metrics {
	m := &metrics{s: s, reg: prometheus.NewRegistry()}
	m.iteration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pgha_watch_iteration_duration_seconds",
		Help:    "Duration of one iteration of pgha watch: observe, judge, plan and act.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	m.reg.MustRegister(m.iteration, m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeIteration(d time.Duration) { m.iteration.Observe(d.Seconds()) }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

var (
	descUp        = prometheus.NewDesc("pgha_node_up", "1 when the node's PostgreSQL answered the last observation.", []string{"node"}, nil)
	descRole      = prometheus.NewDesc("pgha_node_role", "1 for the node's current role (primary, standby or unknown).", []string{"node", "role"}, nil)
	descTimeline  = prometheus.NewDesc("pgha_node_timeline", "The node's timeline ID.", []string{"node"}, nil)
	descWAL       = prometheus.NewDesc("pgha_node_wal_position_bytes", "WAL positions as byte offsets: current (primary), receive and replay (standby).", []string{"node", "kind"}, nil)
	descLagBytes  = prometheus.NewDesc("pgha_node_replication_lag_bytes", "How far the standby's replay is behind the primary's WAL.", []string{"node"}, nil)
	descLagSecs   = prometheus.NewDesc("pgha_node_replication_lag_seconds", "The standby's replay lag in time, as the primary's pg_stat_replication reports it (absent while the standby is not connected to it).", []string{"node"}, nil)
	descSlot      = prometheus.NewDesc("pgha_slot_retained_bytes", "WAL a physical replication slot holds back on the primary: current position minus the slot's restart_lsn.", []string{"node", "slot"}, nil)
	descSlotAct   = prometheus.NewDesc("pgha_slot_active", "1 when a physical replication slot on the primary has a receiver attached.", []string{"node", "slot"}, nil)
	descArchFail  = prometheus.NewDesc("pgha_node_archiver_failing", "1 when the node's WAL archiver (archive_mode on, or always on a standby) failed after its last success (pg_stat_archiver).", []string{"node"}, nil)
	descArchLast  = prometheus.NewDesc("pgha_node_archiver_last_archived_timestamp_seconds", "When the node's WAL archiver last archived a file (Unix time).", []string{"node"}, nil)
	descSwitch    = prometheus.NewDesc("pgha_switchovers_total", "Switchovers completed by this watcher and its API.", nil, nil)
	descFailover  = prometheus.NewDesc("pgha_failovers_total", "Failovers completed by this watcher and its API.", nil, nil)
	descLastFO    = prometheus.NewDesc("pgha_last_failover_timestamp_seconds", "When the last failover completed (Unix time); 0 when none since the watcher started.", nil, nil)
	descLease     = prometheus.NewDesc("pgha_leader_lease_held", "1 when this watcher holds the leader lease and may act.", nil, nil)
	descPending   = prometheus.NewDesc("pgha_plan_pending_actions", "Actions the plan of the latest observation holds (before the watch policy).", nil, nil)
	descAge       = prometheus.NewDesc("pgha_observation_age_seconds", "Age of the observation the API and health checks answer from.", nil, nil)
	descCatalogUp = prometheus.NewDesc("pgha_catalog_up", "1 when the catalog answered the last observation.", nil, nil)
	descGen       = prometheus.NewDesc("pgha_cluster_generation", "The generation of the catalog's cluster record (it grows at each role change).", nil, nil)
	descBkLast    = prometheus.NewDesc("pgha_backup_last_success_timestamp_seconds", "When the newest complete backup of the type finished (Unix time).", []string{"type"}, nil)
	descBkSize    = prometheus.NewDesc("pgha_backup_last_stored_bytes", "Bytes stored (compressed) by the newest complete backup of the type.", []string{"type"}, nil)
	descBkDBSize  = prometheus.NewDesc("pgha_backup_last_database_bytes", "Database bytes the newest complete backup of the type covers.", []string{"type"}, nil)
	descBkDur     = prometheus.NewDesc("pgha_backup_last_duration_seconds", "How long the newest complete backup of the type took.", []string{"type"}, nil)
	descBkCount   = prometheus.NewDesc("pgha_backups", "Backups in the catalog by type and status.", []string{"type", "status"}, nil)
	descVfLast    = prometheus.NewDesc("pgha_backup_last_verify_timestamp_seconds", "When the last verify of a complete backup of the type finished (Unix time), by mode: read (checksums, archives read back) or restore (restored, started, queried).", []string{"type", "mode"}, nil)
	descVfOK      = prometheus.NewDesc("pgha_backup_last_verify_success", "1 when the last verify of a complete backup of the type (by mode) passed, 0 when it failed.", []string{"type", "mode"}, nil)
	descSyncReq   = prometheus.NewDesc("pgha_synchronous_standbys_required", "replication { synchronous { standbys } }: how many standbys must confirm each commit on the primary (absent when not declared).", nil, nil)
	descSyncNow   = prometheus.NewDesc("pgha_synchronous_standbys", "Standbys the primary's commits wait for now (pg_stat_replication.sync_state sync or quorum).", nil, nil)
	descSyncRec   = prometheus.NewDesc("pgha_synchronous_standbys_recorded", "Standbys in the catalog's synchronous set: those a failover may promote (0: none, no failover without -force).", nil, nil)
	descSyncRelax = prometheus.NewDesc("pgha_synchronous_relaxed", "1 when the watcher relaxed the primary to asynchronous (strict = false, too few standbys).", nil, nil)
	descBlocked   = prometheus.NewDesc("pgha_writes_blocked", "1 when commits on the primary wait for synchronous standbys that do not stream (strict = true, or until the watcher relaxes it); status says why.", nil, nil)
	descVfLastOK  = prometheus.NewDesc("pgha_backup_last_verify_success_timestamp_seconds", "When the last verify that passed, of a complete backup of the type (by mode), finished (Unix time).", []string{"type", "mode"}, nil)
	descArcPos    = prometheus.NewDesc("pgha_wal_archive_position_bytes", "Where the continuous WAL archive is durable in the repository (byte offset), as this watcher's receiver reports it.", []string{"timeline"}, nil)
	descArcFlush  = prometheus.NewDesc("pgha_wal_archive_last_flush_timestamp_seconds", "When the continuous WAL archive's durable position last moved (Unix time).", nil, nil)
	descArcLag    = prometheus.NewDesc("pgha_wal_archive_lag_bytes", "How far the continuous WAL archive's durable position is behind the primary's current WAL position (same timeline only).", nil, nil)
	descVfDur     = prometheus.NewDesc("pgha_backup_last_verify_duration_seconds", "How long the last verify of a complete backup of the type took, by mode, where recorded (restore drills).", []string{"type", "mode"}, nil)
)

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descRole, descTimeline, descWAL, descArchFail, descArchLast, descLagBytes, descLagSecs, descSlot, descSlotAct, descSwitch,
		descFailover, descLastFO, descLease, descPending, descAge, descCatalogUp, descGen, descBkLast, descBkSize, descBkDBSize, descBkDur, descBkCount,
		descVfLast, descVfOK, descVfLastOK, descVfDur, descArcPos, descArcFlush, descArcLag, descSyncReq, descSyncNow, descSyncRec, descSyncRelax, descBlocked} {
		ch <- d
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	cnt := m.s.Hub.Counters()
	ch <- prometheus.MustNewConstMetric(descSwitch, prometheus.CounterValue, float64(cnt.Switchovers))
	ch <- prometheus.MustNewConstMetric(descFailover, prometheus.CounterValue, float64(cnt.Failovers))
	last := 0.0
	if !cnt.LastFailover.IsZero() {
		last = unixSeconds(cnt.LastFailover)
	}
	gauge(ch, descLastFO, last)
	snap := m.s.Hub.Latest()
	arc := m.s.Hub.Archive()
	if arc != nil {
		gauge(ch, descArcPos, float64(arc.Flushed), strconv.Itoa(arc.Timeline))
		gauge(ch, descArcFlush, unixSeconds(arc.FlushedAt))
	}
	if snap == nil {
		return
	}
	c, s := snap.Cfg, snap.State
	gauge(ch, descLease, b2f(snap.Leading))
	gauge(ch, descAge, m.s.Hub.now().Sub(snap.At).Seconds())
	gauge(ch, descPending, float64(len(plan.BuildWith(c, s, plan.Options{}).Actions)))
	if c.Catalog != nil {
		gauge(ch, descCatalogUp, b2f(s.Catalog.Reachable))
	}
	if snap.Record != nil {
		gauge(ch, descGen, float64(snap.Record.Generation))
	}
	st := reconcile.BuildStatus(c, s)
	var primary *state.Node
	for _, n := range s.Nodes {
		if n.Role() == state.RolePrimary {
			primary = n
		}
	}
	if arc != nil && primary != nil && primary.Timeline == arc.Timeline && primary.CurrentLSN >= arc.Flushed {
		gauge(ch, descArcLag, float64(primary.CurrentLSN-arc.Flushed))
	}
	for _, ns := range st.Nodes {
		if ns.Undeclared {
			continue
		}
		gauge(ch, descUp, b2f(ns.Reachable), ns.Name)
		for _, r := range []state.Role{state.RolePrimary, state.RoleStandby, state.RoleUnknown} {
			gauge(ch, descRole, b2f(ns.Role == r), ns.Name, string(r))
		}
		if ns.Reachable {
			gauge(ch, descTimeline, float64(ns.Timeline), ns.Name)
		}
		if ns.Role == state.RoleStandby {
			if ns.LagBytes != nil {
				gauge(ch, descLagBytes, float64(*ns.LagBytes), ns.Name)
			}
			// Status says 0 s for a standby the primary does not list
			// in pg_stat_replication; a metric says nothing rather than
			// a lag that looks like none.
			if ns.LagSeconds != nil && primary != nil && primary.Replica(ns.Name) != nil {
				gauge(ch, descLagSecs, *ns.LagSeconds, ns.Name)
			}
		}
	}
	for _, n := range s.Nodes {
		if !n.Reachable {
			continue
		}
		// The archiver, where it runs: a primary's with archive_mode on,
		// a standby's with always (the plan warns of the same).
		if a := n.Archiver; a != nil && (a.Mode == "always" || (a.Mode == "on" && !n.InRecovery)) {
			gauge(ch, descArchFail, b2f(a.Failing()), n.Name)
			if !a.LastArchivedTime.IsZero() {
				gauge(ch, descArchLast, float64(a.LastArchivedTime.UnixNano())/1e9, n.Name)
			}
		}
		if n.InRecovery {
			if n.ReceiveLSN != 0 { // NULL while no WAL receiver runs
				gauge(ch, descWAL, float64(n.ReceiveLSN), n.Name, "receive")
			}
			gauge(ch, descWAL, float64(n.ReplayLSN), n.Name, "replay")
			continue
		}
		gauge(ch, descWAL, float64(n.CurrentLSN), n.Name, "current")
		for _, sl := range n.Slots {
			if sl.Type != "physical" || sl.RestartLSN == 0 {
				continue
			}
			gauge(ch, descSlot, float64(max(int64(n.CurrentLSN)-int64(sl.RestartLSN), 0)), n.Name, sl.Name)
			gauge(ch, descSlotAct, b2f(sl.Active), n.Name, sl.Name)
		}
	}
	if sy := st.Synchronous; sy != nil {
		if sy.Declared {
			gauge(ch, descSyncReq, float64(sy.Required))
			gauge(ch, descSyncRec, float64(len(sy.Recorded)))
			gauge(ch, descSyncRelax, b2f(sy.Relaxed))
		}
		gauge(ch, descSyncNow, float64(len(sy.Synchronous)))
		gauge(ch, descBlocked, b2f(sy.WritesBlocked != ""))
	}
	m.backups(ch, s)
}

// backups reports the catalog's backup records (the repository's when
// the catalog holds none). The verify results are per type and mode,
// from the complete backup verified last, rather than per backup: a
// series per backup ID would make new series at every backup and leave
// the expired ones behind, while an alert asks one question per type
// ("has a restore of a full passed in the last week?").
func (m *metrics) backups(ch chan<- prometheus.Metric, s *state.Cluster) {
	list := s.Catalog.Backups
	if len(list) == 0 {
		list = s.Backups
	}
	type key struct{ typ, status string }
	count := map[key]int{}
	newest := map[string]state.Backup{}
	for _, b := range list {
		count[key{b.Type, b.Status}]++
		if b.Status != "complete" {
			continue
		}
		if cur, ok := newest[b.Type]; !ok || b.Finished.After(cur.Finished) {
			newest[b.Type] = b
		}
	}
	for k, n := range count {
		gauge(ch, descBkCount, float64(n), k.typ, k.status)
	}
	type vkey struct{ typ, mode string }
	lastVerify, lastPassed := map[vkey]state.Backup{}, map[vkey]time.Time{}
	for _, b := range list {
		passed, ok := b.Verified()
		if !ok || b.Status != "complete" {
			continue
		}
		k := vkey{b.Type, b.VerifyMode}
		if cur, ok := lastVerify[k]; !ok || b.VerifiedAt.After(cur.VerifiedAt) {
			lastVerify[k] = b
		}
		if passed && b.VerifiedAt.After(lastPassed[k]) {
			lastPassed[k] = b.VerifiedAt
		}
	}
	for k, b := range lastVerify {
		passed, _ := b.Verified()
		gauge(ch, descVfLast, unixSeconds(b.VerifiedAt), k.typ, k.mode)
		gauge(ch, descVfOK, b2f(passed), k.typ, k.mode)
		if b.VerifySeconds > 0 {
			gauge(ch, descVfDur, b.VerifySeconds, k.typ, k.mode)
		}
	}
	for k, at := range lastPassed {
		gauge(ch, descVfLastOK, unixSeconds(at), k.typ, k.mode)
	}
	for typ, b := range newest {
		gauge(ch, descBkLast, unixSeconds(b.Finished), typ)
		gauge(ch, descBkSize, float64(b.StoredBytes), typ)
		gauge(ch, descBkDBSize, float64(b.DatabaseBytes), typ)
		gauge(ch, descBkDur, b.Finished.Sub(b.Started).Seconds(), typ)
	}
}

// unixSeconds is t as Prometheus timestamps are: seconds since the Unix
// epoch, with a fraction.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
