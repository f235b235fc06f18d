package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/state"
)

// Facts flattens the parts of an observation a plan depends on into
// "path = value" pairs. LSNs and lags are left out on purpose: they move with
// every write and would make every saved plan stale.
func Facts(c *config.Cluster, s *state.Cluster) map[string]string {
	f := map[string]string{}
	for _, cn := range c.Nodes {
		n := s.Node(cn.Name)
		if n == nil {
			n = &state.Node{Name: cn.Name}
		}
		k := "node." + cn.Name + "."
		f[k+"initialized"] = strconv.FormatBool(n.Initialized)
		f[k+"running"] = strconv.FormatBool(n.Running)
		f[k+"role"] = string(n.Role())
		if !n.Reachable {
			continue
		}
		f[k+"system_id"] = n.SystemID
		f[k+"timeline"] = strconv.Itoa(n.Timeline)
		var slots []string
		for _, sl := range n.Slots {
			slots = append(slots, sl.Name)
		}
		sort.Strings(slots)
		f[k+"slots"] = strings.Join(slots, ",")
		if st, ok := n.Settings[SyncSetting]; ok && (c.Replication.Synchronous != nil || st.Value != "") {
			f[k+"settings."+SyncSetting] = st.Value
		}
		for name := range DesiredSettings(c, cn, c.Primary) {
			if st, ok := n.Settings[name]; ok {
				f[k+"settings."+name] = st.Value + st.Unit
			}
		}
		if r, ok := n.Roles[c.Replication.User]; ok {
			f[k+"roles."+c.Replication.User] = fmt.Sprintf("login=%t replication=%t password_matches=%t", r.CanLogin, r.Replication, r.PasswordMatches)
		}
	}
	// A saved plan that removes a node is stale once that node is
	// declared again, stopped or started by hand.
	for _, n := range s.Undeclared {
		if c.Node(n.Name) == nil {
			f["undeclared."+n.Name+".running"] = strconv.FormatBool(n.Running)
		}
	}
	if c.Authority != nil {
		// The record is etcd's: whether it answers decides what the
		// plan could record.
		f["authority.reachable"] = strconv.FormatBool(recordReachable(c, s))
	}
	if c.HasAuthority() {
		if c.Authority == nil && !c.Catalog.Managed {
			// A managed catalog is started before the lock is taken, so its
			// reachability is not something a saved plan can depend on.
			f["catalog.reachable"] = strconv.FormatBool(s.Catalog.Reachable)
		}
		if r := s.Catalog.Record; r != nil {
			f["catalog.record.primary"] = r.Primary
			f["catalog.record.generation"] = strconv.FormatInt(r.Generation, 10)
			if r.Switching() {
				f["catalog.record.switching_to"] = r.SwitchingTo
			}
			if sy := r.Sync; sy != nil {
				// The synchronous set decides which standby a failover
				// may promote, and whether a relax or restore is due.
				f["catalog.record.sync"] = fmt.Sprintf("%s %d %s relaxed=%t", sy.Mode, sy.Count, strings.Join(sy.Standbys, ","), sy.Relaxed)
			}
		}
	}
	return f
}

// Fingerprint hashes facts in a stable order.
func Fingerprint(facts map[string]string) string {
	keys := make([]string, 0, len(facts))
	for k := range facts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, facts[k])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Moved lists, one line each, the facts that differ between a saved plan and
// a new observation: what a stale plan's user needs to read.
func Moved(saved, now map[string]string) []string {
	keys := map[string]bool{}
	for k := range saved {
		keys[k] = true
	}
	for k := range now {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		a, okA := saved[k]
		b, okB := now[k]
		switch {
		case !okA:
			out = append(out, fmt.Sprintf("%s: (absent) → %q", k, b))
		case !okB:
			out = append(out, fmt.Sprintf("%s: %q → (absent)", k, a))
		case a != b:
			out = append(out, fmt.Sprintf("%s: %q → %q", k, a, b))
		}
	}
	sort.Strings(out)
	return out
}
