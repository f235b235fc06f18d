package postgres

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/pki"
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

	store := pki.Store{Dir: filepath.Join(testenv.Dir(t), "tls")}
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

	// ssl = on with a certificate from another CA: refused, no fallback.
	other := pki.Store{Dir: filepath.Join(testenv.Dir(t), "other")}
	if err := other.CreateCA("other", time.Now()); err != nil {
		t.Fatal(err)
	}
	serve := func(s pki.Store, hosts ...string) {
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
	store := pki.Store{Dir: filepath.Join(testenv.Dir(b), "tls")}
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
	secure := endpoint(p)
	for _, c := range []struct {
		name string
		ep   func() Endpoint
	}{
		{"plain", func() Endpoint { return plain }},
		{"tls", func() Endpoint {
			cfg, err := store.ClientConfig(p.Host) // as pgha does, at every connection
			if err != nil {
				b.Fatal(err)
			}
			secure.TLS = cfg
			return secure
		}},
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
