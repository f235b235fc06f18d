package pgconf

import (
	"fmt"
	"regexp"
	"strings"
)

// KV is one keyword = value pair of a libpq connection string.
type KV struct{ Key, Value string }

var (
	conninfoKey = regexp.MustCompile(`^[a-z_]+$`)
	// conninfoBare is a value libpq reads the same without quotes; anything
	// else is quoted, so a value never ends a pair early or adds one.
	conninfoBare = regexp.MustCompile(`^[A-Za-z0-9_.,:/@+=-]+$`)
	conninfoQuot = strings.NewReplacer(`\`, `\\`, `'`, `\'`)
)

// Conninfo renders a libpq keyword/value connection string. A value is
// written bare when it is plain (so that the strings pgha has always
// written, and compares with primary_conninfo, stay the same) and in
// single quotes with ' and \ escaped otherwise, as libpq's
// conninfo_parse reads them: a space, quote or '#' in a value cannot
// start another keyword. Keywords come from pgha's code; a malformed
// one is a bug and panics.
func Conninfo(kv ...KV) string {
	parts := make([]string, 0, len(kv))
	for _, p := range kv {
		if !conninfoKey.MatchString(p.Key) {
			panic(fmt.Sprintf("pgconf: conninfo keyword %q", p.Key))
		}
		v := p.Value
		if !conninfoBare.MatchString(v) {
			v = "'" + conninfoQuot.Replace(v) + "'"
		}
		parts = append(parts, p.Key+"="+v)
	}
	return strings.Join(parts, " ")
}

// ParseConninfo reads a keyword/value connection string the way libpq's
// conninfo_parse does; pgha uses it to check what it renders.
func ParseConninfo(s string) ([]KV, error) {
	var out []KV
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skip()
		if i >= len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skip()
		if i >= len(s) || s[i] != '=' {
			return nil, fmt.Errorf("missing \"=\" after %q in connection info string", key)
		}
		i++
		skip()
		var v strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			for {
				if i >= len(s) {
					return nil, fmt.Errorf("unterminated quoted string in connection info string")
				}
				c := s[i]
				if c == '\\' {
					i++
					if i < len(s) {
						v.WriteByte(s[i])
						i++
					}
					continue
				}
				i++
				if c == '\'' {
					break
				}
				v.WriteByte(c)
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' {
					i++
					if i >= len(s) {
						break
					}
				}
				v.WriteByte(s[i])
				i++
			}
		}
		out = append(out, KV{key, v.String()})
	}
}

// isSpace is C's isspace in the C locale, which libpq uses.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
