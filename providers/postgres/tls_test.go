package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/pki"
	"github.com/pgha/pgha/internal/pki/certstore"
	"github.com/pgha/pgha/internal/testenv"
)

// TestTLSEndpoint: with Endpoint.TLS pgha verifies the server against its
// CA and name (verify-full), falls back to plain text only for a server
// that refuses TLS, and ignores the operator's PGSSL* environment.
func TestTLSEndpoint(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t.Setenv("PGSSLROOTCERT", "/nonexistent/root.crt")
	t.Setenv("PGSSLCERT", "/nonexistent/client.crt")

	store := certstore.Store{Dir: filepath.Join(testenv.Dir(t), "tls")}
	if err := store.CreateCA("t", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := store.Issue("pgha", pki.Request{CommonName: "pgha", Client: true}, time.Now()); err != nil {
		t.Fatal(err)
	}
	client, err := store.ClientConfig(p.Host)
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint(p)
	ep.TLS = client

	// ssl = off: the server refuses TLS; pgha reaches it in plain text.
	var ssl string
	if err := queryOne(ctx, ep, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &ssl); err != nil || ssl != "false" {
		t.Fatalf("server without TLS: ssl=%q, %v", ssl, err)
	}

	// Unless pgha knows the node serves TLS (RequireTLS): then the
	// refusal is an error naming the node, and no session is opened —
	// the server's log (log_connections) shows none.
	if err := Exec(ctx, endpoint(p), "ALTER SYSTEM SET log_connections = on"); err != nil {
		t.Fatal(err)
	}
	if err := Reload(ctx, endpoint(p)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	logFile := filepath.Join(filepath.Dir(p.DataDir), "log")
	sessions := func() int {
		t.Helper()
		data, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(data), "connection authorized: user=postgres database=postgres application_name=pgha")
	}
	before := sessions()
	required := ep
	required.RequireTLS, required.Name = true, "db2"
	err = Exec(ctx, required, "SELECT 1")
	var down *DowngradeError
	want := "connect to " + ep.String() + " as postgres: db2 refused TLS although pgha has seen it serve TLS with the cluster's certificate: " +
		"a server with ssl = off or someone in between; pgha will not fall back to plain text (to turn TLS off, declare tls { enabled = false } and apply)"
	if !errors.As(err, &down) || down.Node != "db2" || err.Error() != want {
		t.Fatalf("a server with ssl = off reached with RequireTLS:\n got %v\nwant %s", err, want)
	}
	if _, err := replConnect(ctx, required); !errors.As(err, &down) {
		t.Fatalf("a replication connection with RequireTLS to a server with ssl = off: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := sessions(); n != before {
		t.Fatalf("RequireTLS opened %d plain-text sessions on a server with ssl = off", n-before)
	}
	// The log does show a session when there is one: the check can fail.
	if err := Exec(ctx, ep, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := sessions(); n != before+1 {
		t.Fatalf("the fallback's plain-text session: %d new sessions in the log, want 1", n-before)
	}

	// ssl = on with a certificate from another CA: refused, no fallback.
	other := certstore.Store{Dir: filepath.Join(testenv.Dir(t), "other")}
	if err := other.CreateCA("other", time.Now()); err != nil {
		t.Fatal(err)
	}
	serve := func(s certstore.Store, hosts ...string) {
		t.Helper()
		if err := s.Issue("server", pki.Request{CommonName: "server", Hosts: hosts, Server: true}, time.Now()); err != nil {
			t.Fatal(err)
		}
		cert, key, _ := s.Read("server")
		for name, data := range map[string][]byte{"tls.crt": cert, "tls.key": key} {
			path := filepath.Join(p.DataDir, name)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			testenv.Chown(t, path)
		}
		plain := endpoint(p)
		for _, q := range []string{"ALTER SYSTEM SET ssl = on", "ALTER SYSTEM SET ssl_cert_file = 'tls.crt'", "ALTER SYSTEM SET ssl_key_file = 'tls.key'", "SELECT pg_reload_conf()"} {
			if err := Exec(ctx, plain, q); err != nil && !strings.Contains(err.Error(), "server refused TLS") {
				// plain text still works until pg_hba says otherwise
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond) // the reload is asynchronous
	}
	serve(other, p.Host)
	err = Exec(ctx, ep, "SELECT 1")
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("server with another CA's certificate: %v", err)
	}

	// A certificate from the CA that does not name the host: refused.
	serve(store, "db9.example")
	if err := Exec(ctx, ep, "SELECT 1"); err == nil || !strings.Contains(err.Error(), "cannot validate certificate for "+p.Host) {
		t.Fatalf("server certificate for another name: %v", err)
	}

	// The CA's certificate for this host: TLS, verified.
	serve(store, p.Host)
	if err := queryOne(ctx, ep, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &ssl); err != nil || ssl != "true" {
		t.Fatalf("server with the cluster's certificate: ssl=%q, %v", ssl, err)
	}
}

func queryOne(ctx context.Context, ep Endpoint, sql string, dst *string) error {
	conn, err := connect(ctx, ep)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	return conn.QueryRow(ctx, sql).Scan(dst)
}

// BenchmarkConnect measures what TLS (TLS 1.3, ECDSA P-256, verify-full
// and a client certificate) adds to one pgha connection: run with
// go test -run '^$' -bench Connect ./providers/postgres/
func BenchmarkConnect(b *testing.B) {
	p := testenv.StartPostgres(b)
	ctx := context.Background()
	plain, secure := tlsEndpoints(b, p)
	for _, c := range []struct {
		name string
		ep   func() Endpoint
	}{
		{"plain", func() Endpoint { return plain }},
		{"tls", secure},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				if err := Exec(ctx, c.ep(), "SELECT 1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// tlsEndpoints turns TLS on at p (a CA, a server certificate, ssl = on)
// and returns its plain endpoint and a function that makes a TLS one
// (verify-full, with a client certificate) with a fresh client
// configuration, as pgha makes at every connection.
func tlsEndpoints(b *testing.B, p *testenv.Postgres) (Endpoint, func() Endpoint) {
	ctx := context.Background()
	store := certstore.Store{Dir: filepath.Join(testenv.Dir(b), "tls")}
	if err := store.CreateCA("b", time.Now()); err != nil {
		b.Fatal(err)
	}
	for _, r := range []struct {
		name string
		req  pki.Request
	}{{"pgha", pki.Request{CommonName: "pgha", Client: true}}, {"server", pki.Request{CommonName: "server", Hosts: []string{p.Host}, Server: true}}} {
		if err := store.Issue(r.name, r.req, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	cert, key, _ := store.Read("server")
	for name, data := range map[string][]byte{"tls.crt": cert, "tls.key": key} {
		path := filepath.Join(p.DataDir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			b.Fatal(err)
		}
		testenv.Chown(b, path)
	}
	plain := endpoint(p)
	for _, q := range []string{"ALTER SYSTEM SET ssl = on", "ALTER SYSTEM SET ssl_cert_file = 'tls.crt'", "ALTER SYSTEM SET ssl_key_file = 'tls.key'", "SELECT pg_reload_conf()"} {
		if err := Exec(ctx, plain, q); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	return plain, func() Endpoint {
		cfg, err := store.ClientConfig(p.Host)
		if err != nil {
			b.Fatal(err)
		}
		secure := endpoint(p)
		secure.TLS = cfg
		return secure
	}
}

// TestTLSDowngradeRefused: someone in between answers "no TLS" to pgha's
// SSLRequest, as an attacker on the path would, and waits for the
// plain-text startup message that would follow. Without RequireTLS pgha
// sends it (the fallback a cluster TLS is being turned on for needs);
// with RequireTLS it never does.
func TestTLSDowngradeRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var plain []string // user names seen in plain-text startup messages
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				for {
					var hdr [8]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return
					}
					size, code := binary.BigEndian.Uint32(hdr[:4]), binary.BigEndian.Uint32(hdr[4:])
					if code == 80877103 { // SSLRequest
						_, _ = c.Write([]byte("N"))
						continue
					}
					if code != 196608 || size < 8 || size > 10000 { // protocol 3.0 startup
						return
					}
					body := make([]byte, size-8)
					if _, err := io.ReadFull(c, body); err != nil {
						return
					}
					f := strings.Split(string(body), "\x00")
					for i := 0; i+1 < len(f); i += 2 {
						if f[i] == "user" {
							mu.Lock()
							plain = append(plain, f[i+1])
							mu.Unlock()
						}
					}
					return
				}
			}()
		}
	}()
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), plain...)
	}

	store := certstore.Store{Dir: filepath.Join(testenv.Dir(t), "tls")}
	if err := store.CreateCA("t", time.Now()); err != nil {
		t.Fatal(err)
	}
	client, err := store.ClientConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ep := Endpoint{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, User: "postgres", Password: "pw", TLS: client}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ep.RequireTLS, ep.Name = true, "db1"
	var down *DowngradeError
	if err := Exec(ctx, ep, "SELECT 1"); !errors.As(err, &down) || down.Node != "db1" {
		t.Fatalf("a downgrade with RequireTLS: %v", err)
	}
	if _, err := replConnect(ctx, ep); !errors.As(err, &down) {
		t.Fatalf("a downgrade of a replication connection with RequireTLS: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := seen(); len(got) != 0 {
		t.Fatalf("with RequireTLS pgha sent plain-text startup messages for %q", got)
	}

	ep.RequireTLS = false
	_ = Exec(ctx, ep, "SELECT 1") // the proxy hangs up after the startup message
	time.Sleep(100 * time.Millisecond)
	if got := seen(); len(got) != 1 || got[0] != "postgres" {
		t.Fatalf("without RequireTLS the fallback's plain-text startup (the downgrade): %q", got)
	}
}
