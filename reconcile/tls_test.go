package reconcile

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pki"
	"github.com/pgha/pgha/internal/pki/certstore"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/state"
)

// TestRequireTLS: pgha's endpoints of a node carry RequireTLS exactly
// when TLS is on and the store records the node as serving TLS; the
// record comes from a verified TLS session (after pgha turned ssl on, or
// observed), and from then on a node answering "no TLS" is unreachable
// with the reason rather than reached in plain text. With TLS turned
// off, nothing is required and the record goes.
func TestRequireTLS(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	store := certstore.Store{Dir: filepath.Join(testenv.Dir(t), "tls")}
	if err := store.CreateCA("t", time.Now()); err != nil {
		t.Fatal(err)
	}
	for name, req := range map[string]pki.Request{"pgha": {CommonName: "pgha", Client: true}, "db2": {CommonName: "db2", Hosts: []string{p.Host}, Server: true, Client: true}} {
		if err := store.Issue(name, req, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	n := &config.Node{Name: "db2", Host: p.Host, Port: p.Port}
	e := &Env{Cfg: &config.Cluster{Name: "t", Primary: "db2", Nodes: []*config.Node{n},
		Postgres: config.Postgres{Superuser: p.User, Password: config.NewSecret(p.Password)},
		TLS:      config.TLS{Enabled: true, Dir: store.Dir}}}
	observe := func() *state.Node {
		t.Helper()
		s := &state.Cluster{Nodes: []*state.Node{{Name: "db2"}}}
		e.observePG(ctx, n, s.Nodes[0], ObserveTimeout)
		e.recordServing(s)
		return s.Nodes[0]
	}
	plain := postgres.Endpoint{Host: p.Host, Port: p.Port, User: p.User, Password: p.Password}
	setSSL := func(ep postgres.Endpoint, on string) {
		t.Helper()
		for _, q := range []string{"ALTER SYSTEM SET ssl = " + on, "SELECT pg_reload_conf()"} {
			if err := postgres.Exec(ctx, ep, q); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond) // the reload is asynchronous
	}

	// TLS being turned on: the server still has ssl = off. Nothing is
	// required, the observation falls back to plain text and records
	// nothing; confirming TLS fails with the reason.
	if e.superuser(n).RequireTLS || e.replicator(n).RequireTLS {
		t.Fatal("RequireTLS without a record")
	}
	if o := observe(); !o.Reachable || o.TLSSession || store.Serving("db2") {
		t.Fatalf("ssl = off, no record: reachable=%v tls=%v recorded=%v (%s)", o.Reachable, o.TLSSession, store.Serving("db2"), o.Error)
	}
	confirmTLSTimeout = time.Second
	defer func() { confirmTLSTimeout = 10 * time.Second }()
	if err := e.confirmTLS(ctx, n); err == nil || !strings.HasPrefix(err.Error(), "db2 still refuses TLS 1s after pgha configured it with ssl = on") {
		t.Fatalf("confirming TLS on a server with ssl = off: %v", err)
	}

	// The plan's reload turns ssl on (here by hand, with the node's
	// certificate): confirmTLS records it, and the endpoints require TLS.
	cert, key, _ := store.Read("db2")
	for name, data := range map[string][]byte{"tls.crt": cert, "tls.key": key} {
		path := filepath.Join(p.DataDir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		testenv.Chown(t, path)
	}
	for _, q := range []string{"ALTER SYSTEM SET ssl_cert_file = 'tls.crt'", "ALTER SYSTEM SET ssl_key_file = 'tls.key'"} {
		if err := postgres.Exec(ctx, plain, q); err != nil {
			t.Fatal(err)
		}
	}
	setSSL(plain, "on")
	if err := e.confirmTLS(ctx, n); err != nil {
		t.Fatal(err)
	}
	if !store.Serving("db2") || !e.superuser(n).RequireTLS || !e.replicator(n).RequireTLS {
		t.Fatalf("after confirmTLS: recorded=%v", store.Serving("db2"))
	}

	// A cluster whose nodes served TLS before the record existed gets it
	// at its first observation over TLS.
	if err := store.ForgetServing("db2"); err != nil {
		t.Fatal(err)
	}
	if o := observe(); !o.Reachable || !o.TLSSession || !store.Serving("db2") {
		t.Fatalf("observed over TLS: reachable=%v tls=%v recorded=%v (%s)", o.Reachable, o.TLSSession, store.Serving("db2"), o.Error)
	}

	// ssl turned off behind pgha's back (or someone in between): the
	// node is unreachable with the reason, never observed in plain text.
	setSSL(e.superuser(n), "off")
	want := "connect to " + p.Host + ":" + strconv.Itoa(p.Port) + " as postgres: db2 refused TLS although pgha has seen it serve TLS"
	if o := observe(); o.Reachable || !strings.HasPrefix(o.Error, want) || !store.Serving("db2") {
		t.Fatalf("a recorded node refusing TLS: reachable=%v error=%q recorded=%v", o.Reachable, o.Error, store.Serving("db2"))
	}

	// tls { enabled = false }: nothing required, plain text, record gone.
	e.Cfg.TLS.Enabled = false
	if e.superuser(n).RequireTLS {
		t.Fatal("RequireTLS with TLS turned off")
	}
	if o := observe(); !o.Reachable || o.TLSSession || store.Serving("db2") {
		t.Fatalf("TLS off: reachable=%v tls=%v recorded=%v (%s)", o.Reachable, o.TLSSession, store.Serving("db2"), o.Error)
	}
}
