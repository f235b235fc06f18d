package config

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// TestValidHost: a node's host is an IP address or an RFC 1123 DNS name;
// anything that could add a field or a line to pg_hba.conf or a conninfo
// is refused.
func TestValidHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1", true}, {"::1", true}, {"fe80::1", true}, {"2001:db8::5", true},
		{"localhost", true}, {"db1", true}, {"db-1.example.com", true}, {"db1.example.com.", true},
		{"1db", true}, {strings.Repeat("a", 63) + ".com", true},
		{"", false}, {".", false}, {"0.0.0.0/0", false}, {"0.0.0.0/0 trust #", false}, {"db1 host=evil", false},
		{"db1\nhost all all 0.0.0.0/0 trust", false}, {"-db1", false}, {"db1-", false}, {"db_1", false},
		{"a..b", false}, {"[::1]", false}, {"fe80::1%eth0", false}, {strings.Repeat("a", 64) + ".com", false},
		{strings.Repeat("a.", 127) + "ab", false}, {"db1'", false}, {"db1\\", false}, {"samenet", true},
	} {
		if got := ValidHost(tc.host); got != tc.ok {
			t.Errorf("ValidHost(%q) = %v, want %v", tc.host, got, tc.ok)
		}
	}
}

// netSplitAddress is what the loader checked catalog addresses with
// before SplitAddress: net.SplitHostPort, a port in range, a host.
func netSplitAddress(addr string) (string, int, bool) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, false
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || h == "" {
		return "", 0, false
	}
	return h, n, true
}

// splitAddressCases are addresses a user may write, right and wrong.
var splitAddressCases = []string{
	"127.0.0.1:6390", "localhost:6379", "redis.example.com:1", "[::1]:6390", "[fe80::1%eth0]:6390", "h:65535",
	"", ":", "h", "h:", ":6390", "h:0", "h:65536", "h:-1", "h:+80", "h:x", "::1:6390", "[::1]", "[::1]6390",
	"[::1]:6390:1", "[::1:6390", "::1]:6390", "h]:1", "[h:1", "a[b:1", "a:1]", "[]:1", "[a]b]:1", "[a[b]:1",
	"h:1:2", "h h:1", " :1",
}

// TestSplitAddress: SplitAddress accepts exactly what net.SplitHostPort
// with a port check accepted, and splits it the same way.
func TestSplitAddress(t *testing.T) {
	for _, addr := range splitAddressCases {
		compareSplit(t, addr)
	}
	if h, p, err := SplitAddress("[::1]:6390"); err != nil || h != "::1" || p != 6390 {
		t.Errorf(`SplitAddress("[::1]:6390") = %q, %d, %v`, h, p, err)
	}
}

func FuzzSplitAddress(f *testing.F) {
	for _, addr := range splitAddressCases {
		f.Add(addr)
	}
	f.Fuzz(compareSplit)
}

func compareSplit(t *testing.T, addr string) {
	h, p, err := SplitAddress(addr)
	wh, wp, ok := netSplitAddress(addr)
	if (err == nil) != ok || h != wh || p != wp {
		t.Errorf("SplitAddress(%q) = %q, %d, %v; net.SplitHostPort gives %q, %d, ok %v", addr, h, p, err, wh, wp, ok)
	}
}

// TestParseIP: ParseIP accepts what net.ParseIP accepts.
func TestParseIP(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "::1", "::ffff:10.0.0.1", "fe80::1", "fe80::1%eth0", "010.0.0.1",
		"1.2.3", "[::1]", "", "localhost", "1.2.3.4 ", "2001:db8::5"} {
		ip, ok := ParseIP(s)
		want := net.ParseIP(s)
		if ok != (want != nil) || ok && !net.IP(ip.AsSlice()).Equal(want) {
			t.Errorf("ParseIP(%q) = %v, %v; net.ParseIP gives %v", s, ip, ok, want)
		}
	}
}
