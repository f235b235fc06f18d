package config

import (
	"fmt"
	"regexp"
	"strconv"
)

var sizeRe = regexp.MustCompile(`^\s*(\d+)\s*(B|kB|KB|kb|MB|GB|TB)?\s*$`)

var sizeUnits = map[string]int64{"": 1, "B": 1, "kB": 1 << 10, "KB": 1 << 10, "kb": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}

// ParseSize reads a byte size the way PostgreSQL writes them: "16MB",
// "512kB", "1GB", "100B" or a bare number of bytes. Units are 1024-based.
func ParseSize(s string) (int64, error) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size; write a number with a unit: B, kB, MB, GB or TB (e.g. \"16MB\")", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size: %w", s, err)
	}
	u := sizeUnits[m[2]]
	if n > (1<<62)/u {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * u, nil
}
