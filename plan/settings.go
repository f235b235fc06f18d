package plan

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgconf"
)

// Managed settings pgha always writes, before the operator's parameters.
// They are what streaming replication and pg_rewind need.
//
// wal_recycle is off because pg_rewind (PostgreSQL 13 to 18) copies every
// file in the source's pg_wal whole, whatever its age, and removes the
// target's own: with recycling, a checkpoint renames old segments into
// future ones instead of removing them, up to max_wal_size after a bulk
// load, and a rejoin then copies hundreds of MB of stale segments (336 MB
// of the source's pg_wal at pgbench scale 70, 192 MB without them). New
// segments are created zero-filled instead, which costs a write per 16 MB
// segment on a busy primary. wal_keep_size stays: slots hold what each
// standby needs only from when they are created, and a new primary's slots
// start at its last restartpoint, so a standby that lagged further when
// the primary failed catches up only through wal_keep_size.
func baseSettings(c *config.Cluster, n *config.Node) map[string]string {
	listen := n.Host
	if c.IsDocker() {
		listen = "*" // the container's own interfaces; publishing decides who reaches it
	}
	_, port := c.PeerEndpoint(n)
	s := map[string]string{
		"listen_addresses":        listen,
		"port":                    strconv.Itoa(port),
		"unix_socket_directories": "",
		"cluster_name":            c.Name + "/" + n.Name,
		"wal_level":               "replica",
		"max_wal_senders":         "10",
		"max_replication_slots":   "10",
		"wal_keep_size":           "128MB",
		"wal_recycle":             "off",
		"hot_standby":             "on",
		"wal_log_hints":           "on",
		"password_encryption":     "scram-sha-256",
	}
	// ssl is always pgha's: turning TLS off in cluster.hcl turns it off
	// on a node that had it.
	s["ssl"] = "off"
	if c.TLS.Enabled {
		f := c.NodeTLS(n)
		s["ssl"] = "on"
		s["ssl_cert_file"] = f.Cert
		s["ssl_key_file"] = f.Key
		s["ssl_ca_file"] = f.CA
	}
	return s
}

// DesiredSettings is, for primary as the cluster's primary, the full set of settings pgha writes to a node's
// pgha.conf: the managed base, the cluster's parameters, the node's own
// parameters, and the replication settings of its role.
func DesiredSettings(c *config.Cluster, n *config.Node, primary string) map[string]string {
	s := baseSettings(c, n)
	for k, v := range c.Postgres.Parameters {
		s[k] = v
	}
	for k, v := range n.Parameters {
		s[k] = v
	}
	if n.Name == primary {
		s["primary_conninfo"] = ""
		s["primary_slot_name"] = ""
	} else {
		s["primary_conninfo"] = c.PrimaryConninfo(n, c.Node(primary))
		s["primary_slot_name"] = n.Slot
		if _, set := s["wal_receiver_timeout"]; !set {
			s["wal_receiver_timeout"] = ReceiverTimeout(c.Failover.CheckInterval)
		}
	}
	return s
}

// ReceiverTimeout is the wal_receiver_timeout pgha gives standbys for a
// failover.check_interval: 3 intervals, at least 1 s, at most
// PostgreSQL's default of 60 s (an interval of 0 counts as the default 1s).
//
// Why: the watcher's detector declares the primary lost only if no
// standby heard from it within 2 intervals (health.DefaultStaleAfter),
// so that a blip between pgha and the primary alone fails nothing over.
// A standby hears WAL, or the WAL sender's keepalives. On an idle primary
// that pgha cannot reach (its heartbeat writes nothing then) only
// keepalives come, and the one that comes soon enough is the reply to
// the receiver's own ping, which it sends after wal_receiver_timeout / 2
// of silence. (A short wal_sender_timeout would also bring keepalives, but
// it is the primary's and holds for every WAL sender, pg_basebackup's and
// backup tools' streams included, cut off after one slow moment of their
// client's.) At PostgreSQL's defaults a
// standby of an idle primary went 10 s and more without a message
// (TestIdleStandbyHearsPrimary), and the detector would fail over a
// primary that was only cut off from pgha. With 3 intervals the ping goes
// after 1.5 intervals of silence (plus PostgreSQL 15's 100 ms wakeups),
// inside the 2 the detector allows. The cost: a standby whose primary
// stays silent for 3 intervals (paused, cut off) drops the connection and
// reconnects by itself, which under load does not happen since WAL flows
// (TestReceiverTimeoutUnderLoad). Only standbys get it: the primary's own
// logical replication subscriptions, if any, keep their timeout. An
// operator's wal_receiver_timeout in parameters wins.
func ReceiverTimeout(interval time.Duration) string {
	if interval <= 0 {
		interval = time.Second
	}
	d := min(max(3*interval, time.Second), time.Minute).Round(time.Millisecond)
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

// HBA is the pg_hba.conf pgha writes: peer for local sockets, scram over TCP
// for everyone and for replication by the replication user from every node's
// host. Never trust over TCP. Names (the replication user, host names) go
// through pgconf.HBAName, so each is one field meaning that name only; a
// name pg_hba.conf cannot hold (config refuses those) drops its line.
// With TLS every TCP line is hostssl, and replication also needs a client
// certificate signed by the cluster CA (clientcert=verify-ca): the
// password alone does not let a node join.
func HBA(c *config.Cluster) []string {
	lines := []string{"local all all peer"}
	user, err := pgconf.HBAName(c.Replication.User)
	if err != nil {
		return lines
	}
	typ, repl := "host", "scram-sha-256"
	if c.TLS.Enabled {
		typ, repl = "hostssl", "scram-sha-256 clientcert=verify-ca"
	}
	if c.IsDocker() {
		// Peers are containers on the cluster network; pgha comes in
		// through a published port. Passwords are always required.
		return append(lines, typ+" all all all scram-sha-256",
			fmt.Sprintf("%s replication %s samenet %s", typ, user, repl))
	}
	// pgha itself connects from loopback; peers from their nodes' hosts.
	hosts := map[string]bool{hostCIDR("127.0.0.1"): true}
	for _, n := range c.Nodes {
		if h := hostCIDR(n.Host); h != "" {
			hosts[h] = true
		}
	}
	hs := make([]string, 0, len(hosts))
	for h := range hosts {
		hs = append(hs, h)
	}
	sort.Strings(hs)
	for _, h := range hs {
		lines = append(lines, fmt.Sprintf("%s all all %s scram-sha-256", typ, h))
	}
	for _, h := range hs {
		lines = append(lines, fmt.Sprintf("%s replication %s %s %s", typ, user, h, repl))
	}
	return lines
}

// hostCIDR is a node's host as a pg_hba.conf address field: an IP address
// as a single-host CIDR, a host name as a (quoted if need be) name, and ""
// for anything else, which config refuses and pg_hba.conf must not get.
func hostCIDR(h string) string {
	if h == "localhost" {
		return "127.0.0.1/32"
	}
	if ip, ok := config.ParseIP(h); ok {
		ip = ip.Unmap() // ::ffff:10.0.0.1 is an IPv4 client to PostgreSQL
		return netip.PrefixFrom(ip, ip.BitLen()).String()
	}
	if !config.ValidHost(h) {
		return ""
	}
	name, err := pgconf.HBAName(h)
	if err != nil {
		return ""
	}
	return name
}

// settingEqual compares a desired value, as written in cluster.hcl, with
// pg_settings' view of it, understanding units ("512MB" equals setting 65536
// with unit 8kB) and boolean spellings.
func settingEqual(desired, value, unit, vartype string) bool {
	desired = strings.TrimSpace(desired)
	switch vartype {
	case "bool":
		d, ok1 := parseBool(desired)
		v, ok2 := parseBool(value)
		return ok1 && ok2 && d == v
	case "integer", "real":
		d, ok1 := toBase(desired, unit)
		v, ok2 := toBase(value, unit)
		return ok1 && ok2 && math.Abs(d-v) <= 1e-9*math.Max(1, math.Abs(v))
	case "enum":
		return strings.EqualFold(desired, value)
	}
	return desired == value
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "on", "true", "yes", "1", "t", "y":
		return true, true
	case "off", "false", "no", "0", "f", "n":
		return false, true
	}
	return false, false
}

var memUnits = map[string]float64{"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
var timeUnits = map[string]float64{"us": 1, "ms": 1e3, "s": 1e6, "min": 60e6, "h": 3600e6, "d": 86400e6}

// unitFactor returns the multiplier of a pg_settings unit such as "8kB".
func unitFactor(unit string) (float64, bool) {
	if unit == "" {
		return 1, true
	}
	i := 0
	for i < len(unit) && unit[i] >= '0' && unit[i] <= '9' {
		i++
	}
	mult := 1.0
	if i > 0 {
		m, _ := strconv.Atoi(unit[:i])
		mult = float64(m)
	}
	if f, ok := memUnits[unit[i:]]; ok {
		return mult * f, true
	}
	if f, ok := timeUnits[unit[i:]]; ok {
		return mult * f, true
	}
	return 0, false
}

// toBase converts "512MB", "30s" or a bare number (in unit) to base units.
func toBase(s, unit string) (float64, bool) {
	i := 0
	for i < len(s) && (s[i] == '-' || s[i] == '.' || (s[i] >= '0' && s[i] <= '9')) {
		i++
	}
	num, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, false
	}
	suffix := strings.TrimSpace(s[i:])
	if num == -1 && suffix == "" {
		return -1, true // "disabled" sentinel in many settings
	}
	if suffix == "" {
		f, ok := unitFactor(unit)
		return num * f, ok
	}
	f, ok := unitFactor(suffix)
	return num * f, ok
}

// displaySetting renders an observed setting with its unit, for before/after.
func displaySetting(value, unit string) string {
	if unit == "" || value == "-1" {
		return value
	}
	f, ok := unitFactor(unit)
	n, err := strconv.ParseFloat(value, 64)
	if !ok || err != nil {
		return value + unit
	}
	base := n * f
	if _, mem := memUnits[strings.TrimLeft(unit, "0123456789")]; mem {
		for _, u := range []string{"TB", "GB", "MB", "kB"} {
			if base >= memUnits[u] && math.Mod(base, memUnits[u]) == 0 {
				return strconv.FormatFloat(base/memUnits[u], 'f', -1, 64) + u
			}
		}
		return strconv.FormatFloat(base, 'f', -1, 64) + "B"
	}
	for _, u := range []string{"d", "h", "min", "s", "ms"} {
		if base >= timeUnits[u] && math.Mod(base, timeUnits[u]) == 0 {
			return strconv.FormatFloat(base/timeUnits[u], 'f', -1, 64) + u
		}
	}
	return strconv.FormatFloat(base, 'f', -1, 64) + "us"
}
