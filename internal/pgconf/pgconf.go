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

// HBA renders pg_hba.conf from its lines.
func HBA(lines []string) []byte {
	return []byte(Header + strings.Join(lines, "\n") + "\n")
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
// with ':' and '\' escaped; a line break, which no passfile can hold, is
// refused.
func Passfile(entries []PassEntry) ([]byte, error) {
	var b strings.Builder
	for i, e := range entries {
		fields := []struct{ name, v string }{{"host", e.Host}, {"database", e.Database}, {"user", e.User}, {"password", e.Password}}
		for _, f := range fields {
			if strings.ContainsAny(f.v, "\r\n") {
				return nil, fmt.Errorf("entry %d: the %s contains a line break, which a passfile cannot hold", i+1, f.name)
			}
		}
		port := "*"
		if e.Port > 0 {
			port = fmt.Sprint(e.Port)
		}
		fmt.Fprintf(&b, "%s:%s:%s:%s:%s\n", passField(e.Host), port, passField(e.Database), passField(e.User), passEscaper.Replace(e.Password))
	}
	return []byte(b.String()), nil
}

var passEscaper = strings.NewReplacer(`\`, `\\`, `:`, `\:`)

func passField(s string) string {
	if s == "" {
		return "*"
	}
	return passEscaper.Replace(s)
}

// RedisConf renders a managed Redis's configuration with persistence on.
func RedisConf(bind string, port int, dir, password string, daemonize bool) []byte {
	d := "no"
	if daemonize {
		d = "yes"
	}
	conf := fmt.Sprintf(`# Managed by pgha: edit cluster.hcl instead.
bind %s
port %d
dir %s
appendonly yes
appendfsync everysec
daemonize %s
pidfile %s/redis.pid
logfile %s/redis.log
protected-mode no
`, bind, port, dir, d, dir, dir)
	if password != "" {
		conf += fmt.Sprintf("requirepass %q\n", password)
	}
	return []byte(conf)
}
