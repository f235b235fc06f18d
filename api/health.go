package api

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// The health checks, with Patroni's paths and meanings, so that a
// Patroni haproxy.cfg works after changing only its check ports. Each
// answers 200 or 503 for one node, from a Snapshot, never by a query.
var healthChecks = map[string]string{
	"primary":   "primary",
	"master":    "primary", // Patroni's older name
	"leader":    "primary",
	"replica":   "replica",
	"read-only": "read-only",
	"health":    "health",
	"liveness":  "liveness",
	"readiness": "readiness",
}

// NodeHealth is the body of a health answer: what the check saw of the
// node, and why it said no.
type NodeHealth struct {
	Node       string `json:"node"`
	Check      string `json:"check"`
	Role       string `json:"role"`
	State      string `json:"state"` // running | stopped | unreachable | unknown
	Timeline   int    `json:"timeline,omitempty"`
	LSN        string `json:"lsn,omitempty"`
	LagBytes   *int64 `json:"lag_bytes,omitempty"`
	Streaming  bool   `json:"streaming,omitempty"`
	Recorded   string `json:"recorded_primary,omitempty"`
	ObservedAt string `json:"observed_at,omitempty"`
	AgeMS      int64  `json:"age_ms"`
	Reason     string `json:"reason,omitempty"`
}

// Health answers check (a key of healthChecks) for node from snap, as
// of now. maxAge is how old an observation may be before no check
// trusts it (the watcher stopped observing): every check then says 503,
// but liveness, which says exactly that.
//
// lost, when not "", says that the node's sentinel connection ended
// after the observation started (Hub.Lost): PostgreSQL on it went away
// since, and every check but liveness says 503 until an observation
// made after that says otherwise.
func Health(check string, q url.Values, snap *Snapshot, node string, now time.Time, maxAge time.Duration, lost string) (int, NodeHealth) {
	kind := healthChecks[check]
	h := NodeHealth{Node: node, Check: check, Role: string(state.RoleUnknown), State: "unknown"}
	no := func(format string, args ...any) (int, NodeHealth) {
		h.Reason = fmt.Sprintf(format, args...)
		return http.StatusServiceUnavailable, h
	}
	if kind == "" {
		return no("no check %q; the checks are /primary, /replica, /read-only, /health, /liveness, /readiness", check)
	}
	if snap == nil {
		return no("no observation yet")
	}
	age := now.Sub(snap.At)
	h.AgeMS = age.Milliseconds()
	h.ObservedAt = snap.At.UTC().Format(time.RFC3339Nano)
	if snap.Cfg.Node(node) == nil {
		return no("%s is not a node of cluster %s", node, snap.Cfg.Name)
	}
	if age > maxAge {
		return no("the last observation is %s old (more than %s): the watcher is not observing", age.Round(time.Millisecond), maxAge)
	}
	if kind == "liveness" {
		return http.StatusOK, h
	}
	if lost != "" {
		h.State = "lost"
		return no("PostgreSQL on %s went away after the last observation: %s", node, lost)
	}
	n := snap.State.Node(node)
	switch {
	case n == nil:
	case n.Reachable:
		h.State = "running"
		h.Role = string(n.Role())
		h.Timeline = n.Timeline
		h.LSN = n.LSN().String()
	case n.Running:
		h.State = "unreachable"
	default:
		h.State = "stopped"
	}
	if snap.Record != nil {
		h.Recorded = snap.Record.Primary
	}
	if n == nil || !n.Reachable {
		why := "not observed"
		if n != nil && n.Error != "" {
			why = n.Error
		}
		return no("PostgreSQL on %s does not answer: %s", node, why)
	}
	primary := n.Role() == state.RolePrimary
	standby := n.Role() == state.RoleStandby
	recorded := snap.Record != nil && snap.Record.Primary == node
	// The watcher's write probe, after the observation, found the
	// primary refusing or dropping writes: it is not writable, whatever
	// the observation's queries said a moment before.
	unwritable := ""
	if primary && snap.Verdict.Node == node {
		unwritable = snap.Unwritable
	}
	if standby {
		if u := n.Upstream; u != nil {
			h.Streaming = u.Status == "streaming"
		}
		if lag, ok := lagOf(snap.State, n); ok {
			h.LagBytes = &lag
		}
	}
	switch kind {
	case "health":
		return http.StatusOK, h
	case "primary":
		switch {
		case !primary:
			return no("%s is a %s, not a writable primary", node, h.Role)
		case !recorded && snap.Record == nil:
			return no("%s is writable, but the catalog records no primary yet", node)
		case !recorded:
			return no("%s is writable, but the catalog records %s as the primary", node, snap.Record.Primary)
		case unwritable != "":
			return no("%s does not take writes: %s", node, unwritable)
		}
		return http.StatusOK, h
	case "replica":
		if !standby {
			return no("%s is a %s, not a standby", node, h.Role)
		}
		if !h.Streaming {
			return no("%s is a standby that does not stream from a primary", node)
		}
		return lagCheck(q, h, no)
	case "read-only":
		if !standby && !primary {
			return no("%s is neither primary nor standby", node)
		}
		if standby {
			return lagCheck(q, h, no)
		}
		return http.StatusOK, h
	case "readiness":
		if primary && recorded && unwritable == "" {
			return http.StatusOK, h
		}
		if standby && h.Streaming {
			return http.StatusOK, h
		}
		return no("%s is neither the recorded primary nor a streaming standby", node)
	}
	return no("no check %q", check)
}

// lagCheck applies ?lag=: the most a standby may be behind, in bytes or
// with a unit ("16MB"), as Patroni's /replica?lag= does.
func lagCheck(q url.Values, h NodeHealth, no func(string, ...any) (int, NodeHealth)) (int, NodeHealth) {
	v := q.Get("lag")
	if v == "" {
		return http.StatusOK, h
	}
	limit, err := config.ParseSize(v)
	if err != nil {
		return no("lag=%s: %v", v, err)
	}
	if h.LagBytes == nil {
		return no("%s's lag is unknown (no primary or standby position observed)", h.Node)
	}
	if *h.LagBytes > limit {
		return no("%s is %d bytes behind, more than lag=%s", h.Node, *h.LagBytes, v)
	}
	return http.StatusOK, h
}

// lagOf is how far standby n has replayed behind the newest WAL position
// observed: the writable primary's, else (the primary is gone) the most
// advanced node's, as Patroni compares with the last leader position.
func lagOf(s *state.Cluster, n *state.Node) (int64, bool) {
	var ref state.LSN
	for _, m := range s.Nodes {
		if !m.Reachable {
			continue
		}
		if m.Role() == state.RolePrimary {
			ref = m.CurrentLSN
			break
		}
		ref = max(ref, m.ReceiveLSN, m.ReplayLSN)
	}
	if ref == 0 || n.ReplayLSN == 0 {
		return 0, false
	}
	return max(int64(ref)-int64(n.ReplayLSN), 0), true
}
