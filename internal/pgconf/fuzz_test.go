package pgconf

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzConninfo: whatever the values, rendering then parsing back as
// libpq does gives the same pairs, so no value adds or changes a keyword.
func FuzzConninfo(f *testing.F) {
	f.Add("127.0.0.1", "replicator", "/srv/data/.pgha/pgpass")
	f.Add("0.0.0.0/0 trust #", "x host=evil", "a'b\\c d")
	f.Add("", "'", "\\")
	f.Fuzz(func(t *testing.T, host, user, passfile string) {
		kv := []KV{{"host", host}, {"port", "5441"}, {"user", user}, {"passfile", passfile}, {"sslmode", "prefer"}}
		s := Conninfo(kv...)
		back, err := ParseConninfo(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if !reflect.DeepEqual(back, kv) {
			t.Fatalf("%s parses as %q, want %q", s, back, kv)
		}
	})
}

// FuzzHBA: a name rendered by HBAName is one field that reads back as the
// name, and a line built from it passes HBA's checks as exactly one rule
// with the method pgha chose.
func FuzzHBA(f *testing.F) {
	f.Add("replicator", "db1.example.com")
	f.Add("all", "0.0.0.0/0 trust #")
	f.Add("x\ny", `a"b`)
	f.Fuzz(func(t *testing.T, user, addr string) {
		u, errU := HBAName(user)
		a, errA := HBAName(addr)
		if errU != nil || errA != nil {
			return // refused: nothing is written
		}
		line := "host replication " + u + " " + a + " scram-sha-256"
		out, err := HBA([]string{line})
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if n := strings.Count(string(out), "\n"); n != 3 {
			t.Fatalf("%q renders %d lines", line, n)
		}
		tokens, comment, err := ParseHBALine(line)
		if err != nil || comment || len(tokens) != 5 {
			t.Fatalf("%q: %v %v %v", line, tokens, comment, err)
		}
		if tokens[2].Text != user || tokens[3].Text != addr || tokens[4].Text != "scram-sha-256" || tokens[4].Quoted {
			t.Fatalf("%q reads back as %+v", line, tokens)
		}
		if hbaKeywords[user] && !tokens[2].Quoted || hbaKeywords[addr] && !tokens[3].Quoted {
			t.Fatalf("%q: a keyword name is not quoted", line)
		}
	})
}

// FuzzPassfile: an entry Passfile accepts reads back, as libpq reads a
// passfile, as the same single entry.
func FuzzPassfile(f *testing.F) {
	f.Add("127.0.0.1", 5441, "*", "replicator", "s3:cr\\et")
	f.Add("#host", 0, "", "u:x", "*")
	f.Add("a\nb", 1, "c", "d", "e\r")
	f.Fuzz(func(t *testing.T, host string, port int, db, user, password string) {
		e := PassEntry{Host: host, Port: port, Database: db, User: user, Password: password}
		b, err := Passfile([]PassEntry{e})
		if err != nil {
			return // refused: nothing is written
		}
		back, err := ParsePassfile(b)
		if err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		if len(back) != 1 || back[0] != e {
			t.Fatalf("%q reads back as %+v, want %+v", b, back, e)
		}
	})
}
