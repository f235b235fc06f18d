package config

import (
	"fmt"
	"regexp"
	"strconv"
)

// sizeRe is a PostgreSQL-style size: digits, optional spaces, a unit.
var sizeRe = regexp.MustCompile(`^\s*(\d+)\s*([A-Za-z]*)\s*$`)

// sizeUnits are PostgreSQL's memory units (1024-based), plus "KB", which
// people write for kB often enough that refusing it would only annoy.
var sizeUnits = map[string]int64{"": 1, "B": 1, "kB": 1 << 10, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}

// ParseSize reads a byte size the way PostgreSQL writes them: "16MB",
// "512kB", "1GB", "100B" or a bare number of bytes such as "0". Units are
// 1024-based and case-sensitive as in postgresql.conf (mB would be
// millibytes to a pedant; pgha does not guess).
func ParseSize(s string) (int64, error) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size; write a whole number with a unit: B, kB, MB, GB or TB (e.g. \"16MB\")", s)
	}
	u, ok := sizeUnits[m[2]]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q; use B, kB, MB, GB or TB (e.g. \"16MB\")", s, m[2])
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > (1<<62)/u {
		return 0, fmt.Errorf("%q is too large a size", s)
	}
	return n * u, nil
}
