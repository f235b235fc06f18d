package health

import (
	"fmt"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// PrimaryOf is the node pgha holds as primary: the catalog record's when
// it names a declared node (after a failover it differs from cluster.hcl
// until failback), else cluster.hcl's.
func PrimaryOf(cfg *config.Cluster, s *state.Cluster) string {
	if rec := s.Catalog.Record; rec != nil && rec.Primary != "" && cfg.Node(rec.Primary) != nil {
		return rec.Primary
	}
	return cfg.Primary
}

// FromCluster turns one observation of the cluster and the write probe's
// result on primary (nil: the heartbeat committed) into what the detector
// reads.
//
// The process is dead when the runtime answered without error and found
// no postmaster, PostgreSQL did not answer either, and there was a server
// to die: the node's data is initialised, or (Docker) its container
// exists. The container alone is enough so that an observation which
// skips reading a stopped container's volume (a probe container costs
// 1.7-1.9 s here) still tells a crash at the first check.
//
// A primary found in recovery failed its check as a read-only one (never
// lost for that: the planner sees a cluster without a writable primary
// and says what it does).
//
// A standby streams from the primary when its WAL receiver streams from
// the primary's address as the standbys know it (config.PeerEndpoint: the
// container's name on Docker) or as pgha reaches it: pg_stat_wal_receiver
// reports the host as primary_conninfo names it.
func FromCluster(cfg *config.Cluster, s *state.Cluster, primary string, probe error) Observation {
	obs := Observation{Primary: primary, Probe: probe}
	p := s.Node(primary)
	if p == nil {
		obs.Error = "not observed"
	} else {
		obs.Reachable, obs.Error = p.Reachable, p.Error
		obs.ProcessDead = !p.Reachable && !p.Running && p.RuntimeError == "" && (p.Initialized || p.Container != nil)
		if p.Reachable && p.InRecovery && probe == nil {
			// Nobody probes a standby's writes: it takes none.
			obs.Probe = inRecovery{}
		}
	}
	var peers [][2]string
	if cn := cfg.Node(primary); cn != nil {
		h, port := cfg.PeerEndpoint(cn)
		peers = append(peers, [2]string{h, fmt.Sprint(port)})
	}
	if p != nil && p.Host != "" {
		peers = append(peers, [2]string{p.Host, fmt.Sprint(p.Port)})
	}
	for _, cn := range cfg.Nodes {
		if cn.Name == primary {
			continue
		}
		sb := Standby{Name: cn.Name}
		n := s.Node(cn.Name)
		if n == nil || !n.Reachable || !n.InRecovery {
			obs.Standbys = append(obs.Standbys, sb)
			continue
		}
		sb.Reachable = true
		switch u := n.Upstream; {
		case u == nil:
			sb.Receiver = "no WAL receiver"
		case u.Status != "streaming":
			sb.Receiver = "WAL receiver " + u.Status
		case !matches(peers, u.Host, u.Port):
			sb.Receiver = fmt.Sprintf("streaming from %s:%d", u.Host, u.Port)
		default:
			sb.Streaming, sb.LastMessageAge = true, u.LastMessageAge
		}
		obs.Standbys = append(obs.Standbys, sb)
	}
	return obs
}

func matches(peers [][2]string, host string, port int) bool {
	for _, p := range peers {
		if p[0] == host && p[1] == fmt.Sprint(port) {
			return true
		}
	}
	return false
}

// inRecovery is the probe's result for a primary found in recovery.
type inRecovery struct{}

func (inRecovery) Error() string  { return "it is in recovery (a standby) and takes no writes" }
func (inRecovery) ReadOnly() bool { return true }
