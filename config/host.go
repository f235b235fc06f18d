package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Checks of single values that cluster.hcl gives and the planner relies
// on. They are written with net/netip and strings rather than package net
// so that config, which plan imports, imports nothing that can dial (see
// plan's TestPurity).

// dnsLabelRe is one label of a DNS name as RFC 1123 allows it: letters,
// digits and hyphens, not starting or ending with a hyphen.
var dnsLabelRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// ParseIP parses an IPv4 or IPv6 address without a zone or brackets,
// exactly what net.ParseIP accepts.
func ParseIP(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip, true
}

// ValidHost reports whether h is an IP address (v4 or v6, without a zone
// or brackets) or a DNS name. A node's host is written, unquoted, into
// pg_hba.conf and libpq conninfo strings on every node, so anything else —
// a space, a '#', a '/' — could add a line or a field there; checking it
// here turns such a value into a diagnostic rather than a trust line.
func ValidHost(h string) bool {
	if _, ok := ParseIP(h); ok {
		return true
	}
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if !dnsLabelRe.MatchString(label) {
			return false
		}
	}
	return true
}

// SplitAddress splits a catalog address, "host:port" or "[host]:port" for
// IPv6, and checks that it has a host and a port between 1 and 65535, so
// that a bad address fails when the file is read and not at connection
// time. It accepts what net.SplitHostPort accepts (TestSplitAddress and
// FuzzSplitAddress compare the two).
func SplitAddress(addr string) (host string, port int, err error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("%q has no port", addr)
	}
	j, k := 0, 0 // no '[' from j on, no ']' from k on
	if addr[0] == '[' {
		// The first ']' must stand just before the last ':'.
		end := strings.IndexByte(addr, ']')
		if end+1 != i {
			return "", 0, fmt.Errorf("%q is not [host]:port", addr)
		}
		host, j, k = addr[1:end], 1, end+1
	} else {
		host = addr[:i]
		if strings.IndexByte(host, ':') >= 0 {
			return "", 0, fmt.Errorf("%q has too many colons (an IPv6 address goes in brackets: [::1]:6390)", addr)
		}
	}
	if strings.IndexByte(addr[j:], '[') >= 0 || strings.IndexByte(addr[k:], ']') >= 0 {
		return "", 0, fmt.Errorf("%q has a bracket out of place", addr)
	}
	p := addr[i+1:]
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("port %q is not between 1 and 65535", p)
	}
	if host == "" {
		return "", 0, fmt.Errorf("no host in %q", addr)
	}
	return host, n, nil
}
