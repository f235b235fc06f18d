package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/pgconf"
)

// TestHBAAndConninfo: the pg_hba.conf lines and primary_conninfo pgha
// writes, on exact values, for plain hosts and for hosts that need care
// (an IPv6 address, a name that is a pg_hba.conf keyword, a data
// directory with a space).
func TestHBAAndConninfo(t *testing.T) {
	c := testCluster()
	got := strings.Join(HBA(c), "\n")
	want := "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\nhost replication replicator 127.0.0.1/32 scram-sha-256"
	if got != want {
		t.Errorf("HBA:\n%s\nwant\n%s", got, want)
	}
	if got, want := c.PrimaryConninfo(c.Node("db2"), c.Node("db1")),
		"host=127.0.0.1 port=5441 user=replicator application_name=db2 passfile=/srv/pgha/data/.pgha/pgpass sslmode=prefer"; got != want {
		t.Errorf("conninfo %s, want %s", got, want)
	}

	c.Nodes[1].Host = "all" // a host name pg_hba.conf would read as a keyword
	c.Nodes[2].Host = "::1"
	c.Runtime.DataDir = "/srv/my data"
	lines := HBA(c)
	want = "local all all peer\nhost all all \"all\" scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n" +
		"host replication replicator \"all\" scram-sha-256\nhost replication replicator 127.0.0.1/32 scram-sha-256\nhost replication replicator ::1/128 scram-sha-256"
	if got := strings.Join(lines, "\n"); got != want {
		t.Errorf("HBA:\n%s\nwant\n%s", got, want)
	}
	if _, err := pgconf.HBA(lines); err != nil {
		t.Errorf("pgconf.HBA refuses plan.HBA's lines: %v", err)
	}
	ci := c.PrimaryConninfo(c.Node("db3"), c.Node("db2"))
	if want := "host=all port=5442 user=replicator application_name=db3 passfile='/srv/my data/.pgha/pgpass' sslmode=prefer"; ci != want {
		t.Errorf("conninfo %s, want %s", ci, want)
	}

	c.Nodes[1].Host = "0.0.0.0/0 trust #" // config refuses it; the renderer drops it too
	for _, l := range HBA(c) {
		if strings.Contains(l, "trust") || strings.Contains(l, "0.0.0.0") {
			t.Errorf("HBA wrote %q", l)
		}
	}
	kv, err := pgconf.ParseConninfo(c.PrimaryConninfo(c.Node("db3"), c.Node("db2")))
	if err != nil || len(kv) != 6 || kv[0] != (pgconf.KV{Key: "host", Value: "0.0.0.0/0 trust #"}) {
		t.Errorf("conninfo with a bad host parses as %v, %v", kv, err)
	}
}

// TestHostCIDR: a node's host as a pg_hba.conf address field, the same as
// net.ParseIP gave before plan stopped importing net: an IPv4-mapped
// address is an IPv4 client, an address with a zone is refused.
func TestHostCIDR(t *testing.T) {
	for host, want := range map[string]string{
		"10.0.0.1": "10.0.0.1/32", "::1": "::1/128", "2001:DB8:0::5": "2001:db8::5/128", "::ffff:10.0.0.1": "10.0.0.1/32",
		"localhost": "127.0.0.1/32", "db1.example.com": "db1.example.com", "fe80::1%eth0": "", "10.0.0.1/8": "", "db 1": "",
	} {
		if got := hostCIDR(host); got != want {
			t.Errorf("hostCIDR(%q) = %q, want %q", host, got, want)
		}
	}
}

// TestReceiverTimeout: standbys get wal_receiver_timeout = 3 ×
// check_interval (1 s to 60 s), so that their receivers ping an idle
// primary within the detector's StaleAfter (2 intervals); the primary
// gets none, and an operator's value wins.
func TestReceiverTimeout(t *testing.T) {
	for interval, want := range map[time.Duration]string{
		0: "3s", time.Second: "3s", 500 * time.Millisecond: "1500ms", 200 * time.Millisecond: "1s",
		2 * time.Second: "6s", 1234567 * time.Microsecond: "3704ms", 30 * time.Second: "60s",
	} {
		if got := ReceiverTimeout(interval); got != want {
			t.Errorf("ReceiverTimeout(%s) = %s, want %s", interval, got, want)
		}
		// Half the timeout (when the receiver pings) plus PostgreSQL
		// 15's 100 ms wakeups stays under StaleAfter (2 intervals, 1 s
		// at least), as long as the timeout was not capped.
		d, ok := toBase(want, "ms")
		if stale := max(2*interval, time.Second); ok && interval > 0 && interval <= 20*time.Second &&
			time.Duration(d)*time.Microsecond/2+100*time.Millisecond >= stale {
			t.Errorf("check_interval %s: a ping after %s of silence comes too late for StaleAfter %s", interval, time.Duration(d)*time.Microsecond/2, stale)
		}
	}
	c := testCluster()
	c.Failover.CheckInterval = 2 * time.Second
	if got := DesiredSettings(c, c.Node("db2"), "db1")["wal_receiver_timeout"]; got != "6s" {
		t.Errorf("standby db2: wal_receiver_timeout %q, want 6s", got)
	}
	if got, set := DesiredSettings(c, c.Node("db1"), "db1")["wal_receiver_timeout"]; set {
		t.Errorf("primary db1: wal_receiver_timeout %q, want none", got)
	}
	c.Postgres.Parameters = map[string]string{"wal_receiver_timeout": "30s"}
	if got := DesiredSettings(c, c.Node("db2"), "db1")["wal_receiver_timeout"]; got != "30s" {
		t.Errorf("standby db2 with the operator's 30s: %q", got)
	}
}
