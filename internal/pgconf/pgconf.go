// Package pgconf renders the configuration files pgha writes into a data
// directory, the same way on every runtime.
package pgconf

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Header starts every file pgha manages.
const Header = "# managed by pgha; edit cluster.hcl instead\n"

// IncludeLine is appended once to postgresql.conf so that pgha.conf wins.
const IncludeLine = "include_if_exists = 'pgha.conf'"

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// Settings renders pgha.conf. Values are always quoted, which
// postgresql.conf accepts for every type; a quote is doubled and a
// backslash too (the parser treats it as an escape). Names are checked so
// that no value can smuggle in a second setting.
func Settings(settings map[string]string) ([]byte, error) {
	keys := make([]string, 0, len(settings))
	for k, v := range settings {
		if !settingName.MatchString(k) {
			return nil, fmt.Errorf("setting name %q is not a PostgreSQL parameter name", k)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("setting %s: the value contains a line break or NUL, which postgresql.conf cannot hold", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	q := strings.NewReplacer(`'`, `''`, `\`, `\\`)
	var b strings.Builder
	b.WriteString(Header)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = '%s'\n", k, q.Replace(settings[k]))
	}
	return []byte(b.String()), nil
}

// HBA renders pg_hba.conf from its lines. Each line is checked to be one
// rule of the kinds pgha writes (see checkHBALine), so that a value that
// slipped past validation cannot add a rule, least of all a trust one.
func HBA(lines []string) ([]byte, error) {
	for _, l := range lines {
		if err := checkHBALine(l); err != nil {
			return nil, err
		}
	}
	return []byte(Header + "# TYPE DATABASE USER ADDRESS METHOD\n" + strings.Join(lines, "\n") + "\n"), nil
}

// PassEntry is one line of a libpq passfile; empty fields match anything.
type PassEntry struct {
	Host     string
	Port     int
	Database string
	User     string
	Password string
}

// Passfile renders a libpq passfile (host:port:database:user:password)
// with ':' and '\' escaped, a field that is literally "*" escaped so that
// it is not a wildcard, and a leading '#' escaped so that the line is not a
// comment. A line break or NUL, which no passfile can hold, is refused.
func Passfile(entries []PassEntry) ([]byte, error) {
	var b strings.Builder
	for i, e := range entries {
		fields := []struct{ name, v string }{{"host", e.Host}, {"database", e.Database}, {"user", e.User}, {"password", e.Password}}
		for _, f := range fields {
			if strings.ContainsAny(f.v, "\r\n\x00") {
				return nil, fmt.Errorf("entry %d: the %s contains a line break or NUL, which a passfile cannot hold", i+1, f.name)
			}
		}
		if e.Port < 0 || e.Port > 65535 {
			return nil, fmt.Errorf("entry %d: port %d out of range", i+1, e.Port)
		}
		port := "*"
		if e.Port > 0 {
			port = fmt.Sprint(e.Port)
		}
		fmt.Fprintf(&b, "%s:%s:%s:%s:%s\n", passField(e.Host), port, passField(e.Database), passField(e.User), passPassword(e.Password))
	}
	return []byte(b.String()), nil
}

var passEscaper = strings.NewReplacer(`\`, `\\`, `:`, `\:`)

// passField escapes a matched field; "" is the wildcard.
func passField(s string) string {
	switch {
	case s == "":
		return "*"
	case s == "*":
		return `\*`
	case s[0] == '#':
		return `\` + passEscaper.Replace(s)
	}
	return passEscaper.Replace(s)
}

func passPassword(s string) string {
	return passEscaper.Replace(s)
}

// ParsePassfile reads a passfile the way libpq's passwordFromFile does: a
// line starting with '#' is a comment, fields end at an unescaped ':', a
// backslash takes the next character literally, an unescaped "*" field
// matches anything (returned as "", port 0). pgha uses it to check what
// Passfile renders.
func ParsePassfile(b []byte) ([]PassEntry, error) {
	var out []PassEntry
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		var fields [4]string
		rest := line
		for i := range fields {
			f, r, ok := passSplit(rest)
			if !ok {
				return nil, fmt.Errorf("passfile line %d has fewer than 5 fields", n+1)
			}
			fields[i], rest = f, r
		}
		e := PassEntry{Host: fields[0], Database: fields[2], User: fields[3], Password: passUnescape(rest)}
		if fields[1] != "" {
			if _, err := fmt.Sscanf(fields[1], "%d", &e.Port); err != nil || fmt.Sprint(e.Port) != fields[1] {
				return nil, fmt.Errorf("passfile line %d: port %q", n+1, fields[1])
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// passSplit takes one matched field off s: "*" (unescaped) is "".
func passSplit(s string) (field, rest string, ok bool) {
	if strings.HasPrefix(s, "*:") {
		return "", s[2:], true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			i++
			b.WriteByte(s[i])
			continue
		}
		if c == ':' {
			return b.String(), s[i+1:], true
		}
		b.WriteByte(c)
	}
	return "", "", false
}

func passUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RedisOptions describe a managed redis-server. Every runtime renders its
// redis.conf through RedisConf, so that a setting (a password, TLS) is
// added in one place.
type RedisOptions struct {
	// Bind lists the addresses it listens on: loopback locally; on Docker
	// the container's own address on the cluster network (where the
	// published port leads) and loopback.
	Bind []string
	Port int
	Dir  string // working directory: appendonly files
	// Password is requirepass; "" leaves the server open to whoever
	// reaches it (protected-mode then limits that to loopback).
	Password  string
	Daemonize bool
	PidFile   string // default Dir/redis.pid
	LogFile   string // default Dir/redis.log
	// TLS, when set, makes Redis speak TLS only on Port (no plain port)
	// and ask every client for a certificate from the cluster CA.
	TLS *RedisTLSFiles
}

// RedisTLSFiles are the paths, as the server sees them, of its
// certificate, its key and the CA its clients' certificates must chain to.
type RedisTLSFiles struct{ Cert, Key, CA string }

// RedisConf renders a managed Redis's whole configuration (nothing of a
// distribution's redis.conf applies): persistence on (appendonly, fsync
// every second: the catalog holds the backup history and the cluster
// record), protected-mode on. Every value is quoted for Redis's argument
// splitter (redisQuote), so a directory or a password with a space, a
// quote or a line break stays one argument of one directive.
func RedisConf(o RedisOptions) []byte {
	pid, log := o.PidFile, o.LogFile
	if pid == "" {
		pid = o.Dir + "/redis.pid"
	}
	if log == "" {
		log = o.Dir + "/redis.log"
	}
	d := "no"
	if o.Daemonize {
		d = "yes"
	}
	var b strings.Builder
	b.WriteString(Header)
	b.WriteString("bind")
	for _, a := range o.Bind {
		b.WriteString(" " + redisQuote(a))
	}
	if t := o.TLS; t != nil {
		// port 0 closes the plain port; tls-port takes its number.
		fmt.Fprintf(&b, "\nport 0\ntls-port %d\ntls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients yes",
			o.Port, redisQuote(t.Cert), redisQuote(t.Key), redisQuote(t.CA))
	} else {
		fmt.Fprintf(&b, "\nport %d", o.Port)
	}
	b.WriteString("\nprotected-mode yes\n")
	fmt.Fprintf(&b, "dir %s\n", redisQuote(o.Dir))
	b.WriteString("appendonly yes\nappendfsync everysec\n")
	fmt.Fprintf(&b, "daemonize %s\npidfile %s\nlogfile %s\n", d, redisQuote(pid), redisQuote(log))
	if o.Password != "" {
		fmt.Fprintf(&b, "requirepass %s\n", redisQuote(o.Password))
	}
	return []byte(b.String())
}

// redisQuote writes s as one double-quoted argument of redis.conf, as
// Redis's sdssplitargs reads it: backslash and double quote escaped,
// anything outside printable ASCII as \xHH.
func redisQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
