package pgconf

import (
	"reflect"
	"strings"
	"testing"
)

func TestConninfo(t *testing.T) {
	for _, tc := range []struct {
		kv   []KV
		want string
	}{
		{[]KV{{"host", "127.0.0.1"}, {"port", "5441"}, {"user", "replicator"}, {"passfile", "/srv/data/.pgha/pgpass"}, {"sslmode", "prefer"}},
			"host=127.0.0.1 port=5441 user=replicator passfile=/srv/data/.pgha/pgpass sslmode=prefer"},
		{[]KV{{"host", "::1"}, {"application_name", "db-2.x"}}, "host=::1 application_name=db-2.x"},
		{[]KV{{"passfile", "/my data/pgpass"}}, `passfile='/my data/pgpass'`},
		{[]KV{{"host", "0.0.0.0/0 trust #"}}, `host='0.0.0.0/0 trust #'`},
		{[]KV{{"user", `a'b\c`}}, `user='a\'b\\c'`},
		{[]KV{{"user", "x host=evil"}}, `user='x host=evil'`},
		{[]KV{{"password", ""}}, `password=''`},
	} {
		got := Conninfo(tc.kv...)
		if got != tc.want {
			t.Errorf("Conninfo(%v) = %s, want %s", tc.kv, got, tc.want)
		}
		back, err := ParseConninfo(got)
		if err != nil || !reflect.DeepEqual(back, tc.kv) {
			t.Errorf("ParseConninfo(%s) = %v, %v; want %v", got, back, err, tc.kv)
		}
	}
}

func TestParseConninfo(t *testing.T) {
	got, err := ParseConninfo(` host = a  port=5 user='x y'  pw=a\ b`)
	want := []KV{{"host", "a"}, {"port", "5"}, {"user", "x y"}, {"pw", "a b"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"host", "host='a", "host a"} {
		if _, err := ParseConninfo(bad); err == nil {
			t.Errorf("ParseConninfo(%q) gave no error", bad)
		}
	}
}

func TestHBA(t *testing.T) {
	lines := []string{"local all all peer", "host all all 127.0.0.1/32 scram-sha-256",
		`host replication replicator "db.example" scram-sha-256`, `host replication replicator "all" scram-sha-256`}
	got, err := HBA(lines)
	if err != nil {
		t.Fatal(err)
	}
	want := Header + "# TYPE DATABASE USER ADDRESS METHOD\n" + strings.Join(lines, "\n") + "\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	for _, tc := range []struct{ line, err string }{
		{"host all all 0.0.0.0/0 trust # scram-sha-256", "contains a comment"},
		{"host all all 0.0.0.0/0 trust", `method "trust" is not one pgha writes`},
		{"host all all 10.0.0.1/32 scram-sha-256 # x", "contains a comment"},
		{"host all all 10.0.0.1/32 scram-sha-256\nhost all all all trust", "line break"},
		{"host all all 10.0.0.1/32 extra scram-sha-256", "has 6 fields, not 5"},
		{"hostssl replication r 10.0.0.1/32 scram-sha-256 clientcert=verify-ca trust", "has 7 fields, not 5"},
		{"hostssl replication r 10.0.0.1/32 scram-sha-256 map=x", "has 6 fields, not 5"},
		{"hostx all all 10.0.0.1/32 scram-sha-256", `unknown connection type "hostx"`},
		{`host all all "10.0.0.1/32 scram-sha-256`, "unterminated quote"},
		{"", "no connection type"},
	} {
		_, err := HBA([]string{tc.line})
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("HBA(%q): error %v, want one containing %q", tc.line, err, tc.err)
		}
	}
	tlsLine := "hostssl replication replicator samenet scram-sha-256 clientcert=verify-ca"
	if got, err := HBA([]string{tlsLine}); err != nil || !strings.HasSuffix(string(got), "\n"+tlsLine+"\n") {
		t.Errorf("HBA(%q) = %q, %v", tlsLine, got, err)
	}
}

func TestHBAName(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"replicator", "replicator", ""}, {"db1.example.com", "db1.example.com", ""},
		{"all", `"all"`, ""}, {"samenet", `"samenet"`, ""}, {"a b", `"a b"`, ""}, {"x#y", `"x#y"`, ""},
		{"+group", `"+group"`, ""}, {"@file", `"@file"`, ""},
		{"", "", "cannot be written"}, {`a"b`, "", "cannot be written"}, {"a\nb", "", "cannot be written"},
	} {
		got, err := HBAName(tc.in)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("HBAName(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestPassfile(t *testing.T) {
	entries := []PassEntry{
		{User: "replicator", Password: "s3:cr\\et"},
		{Host: "*", Port: 5441, Database: "#db", User: "u:x", Password: "*"},
	}
	got, err := Passfile(entries)
	if err != nil {
		t.Fatal(err)
	}
	want := "*:*:*:replicator:s3\\:cr\\\\et\n\\*:5441:\\#db:u\\:x:*\n"
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	back, err := ParsePassfile(got)
	if err != nil || !reflect.DeepEqual(back, entries) {
		t.Fatalf("ParsePassfile = %+v, %v; want %+v", back, err, entries)
	}
	for _, e := range []PassEntry{{Password: "a\nb"}, {User: "a\rb"}, {Host: "a\x00"}, {Port: -1}} {
		if _, err := Passfile([]PassEntry{e}); err == nil {
			t.Errorf("Passfile(%+v) gave no error", e)
		}
	}
}

// TestRedisConf: one renderer for both runtimes; every value quoted, so a
// password cannot add a directive; protected-mode always on.
func TestRedisConf(t *testing.T) {
	got := string(RedisConf(RedisOptions{Bind: []string{"127.0.0.1", "::1"}, Port: 6390, Dir: "/srv/my data/redis",
		Password: "pa\"ss\\w\nrd\nbind 0.0.0.0", Daemonize: true}))
	want := Header + `bind "127.0.0.1" "::1"
port 6390
protected-mode yes
dir "/srv/my data/redis"
appendonly yes
appendfsync everysec
daemonize yes
pidfile "/srv/my data/redis/redis.pid"
logfile "/srv/my data/redis/redis.log"
requirepass "pa\"ss\\w\x0ard\x0abind 0.0.0.0"
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// TestRedisConfTLS: with TLS the plain port is closed and its number is
// the TLS port, in one place (no directive that a later one overrides).
func TestRedisConfTLS(t *testing.T) {
	got := string(RedisConf(RedisOptions{Bind: []string{"127.0.0.1"}, Port: 6390, Dir: "/d",
		TLS: &RedisTLSFiles{Cert: "/d/tls/redis.crt", Key: "/d/tls/redis.key", CA: "/d/tls/ca.crt"}}))
	want := Header + `bind "127.0.0.1"
port 0
tls-port 6390
tls-cert-file "/d/tls/redis.crt"
tls-key-file "/d/tls/redis.key"
tls-ca-cert-file "/d/tls/ca.crt"
tls-auth-clients yes
protected-mode yes
dir "/d"
appendonly yes
appendfsync everysec
daemonize no
pidfile "/d/redis.pid"
logfile "/d/redis.log"
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if strings.Count(got, "port ") != 2 { // "port 0" and "tls-port 6390"
		t.Fatalf("port directives: %q", got)
	}
}

func TestSettings(t *testing.T) {
	got, err := Settings(map[string]string{"b": `it's \ ok`, "a": "1"})
	if err != nil || string(got) != Header+"a = '1'\nb = 'it''s \\\\ ok'\n" {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, m := range []map[string]string{{"a\nb": "1"}, {"a": "x\ny = 'z'"}, {"a b": "1"}} {
		if _, err := Settings(m); err == nil {
			t.Errorf("Settings(%q) gave no error", m)
		}
	}
}
