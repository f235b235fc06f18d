package pki

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func TestIssueChainsToCAWithSANs(t *testing.T) {
	caCert, caKey, err := NewCA("imdb", now)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCert(caCert)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || ca.Subject.CommonName != "pgha CA imdb" {
		t.Fatalf("CA: IsCA=%v CN=%q", ca.IsCA, ca.Subject.CommonName)
	}
	if got := ca.NotAfter.Sub(now); got != CAValidity {
		t.Fatalf("CA lives %v, want %v", got, CAValidity)
	}
	hosts := []string{"127.0.0.1", "localhost", "pgha-imdb-db1", "10.0.0.5"}
	cert, key, err := Issue(caCert, caKey, Request{CommonName: "db1", Hosts: hosts, Server: true, Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	in := Inspect(cert, key, caCert, now)
	if !in.Verified {
		t.Fatalf("not verified: %s", in.Problem)
	}
	want := []string{"localhost", "pgha-imdb-db1", "127.0.0.1", "10.0.0.5"}
	if !slices.Equal(in.Hosts, want) {
		t.Fatalf("hosts %v, want %v", in.Hosts, want)
	}
	if in.NotAfter != now.Add(CertValidity) {
		t.Fatalf("NotAfter %v, want %v", in.NotAfter, now.Add(CertValidity))
	}
	if in.Fingerprint != Fingerprint(cert) || len(in.Fingerprint) != 64 {
		t.Fatalf("fingerprint %q vs %q", in.Fingerprint, Fingerprint(cert))
	}
	c, _ := ParseCert(cert)
	if err := c.VerifyHostname("pgha-imdb-db1"); err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyHostname("db2"); err == nil {
		t.Fatal("db2 verified against db1's certificate")
	}

	// Another CA's certificate does not verify, and says so.
	otherCA, otherKey, _ := NewCA("other", now)
	foreign, foreignKey, _ := Issue(otherCA, otherKey, Request{CommonName: "db1", Hosts: hosts, Server: true}, now)
	in = Inspect(foreign, foreignKey, caCert, now)
	if in.Verified || !strings.Contains(in.Problem, "not signed by the cluster CA") {
		t.Fatalf("foreign certificate: verified=%v problem=%q", in.Verified, in.Problem)
	}
	// A key that is not the certificate's.
	in = Inspect(cert, foreignKey, caCert, now)
	if in.Verified || in.Problem != "the key does not belong to the certificate" {
		t.Fatalf("wrong key: verified=%v problem=%q", in.Verified, in.Problem)
	}
}

func TestRenewal(t *testing.T) {
	hosts := []string{"127.0.0.1", "db1"}
	ok := Info{Verified: true, NotAfter: now.Add(31 * 24 * time.Hour), Hosts: []string{"db1", "127.0.0.1"}}
	cases := []struct {
		name string
		in   Info
		want string
	}{
		{"valid, 31 days left", ok, ""},
		{"29 days left", Info{Verified: true, NotAfter: now.Add(29 * 24 * time.Hour), Hosts: ok.Hosts},
			"it expires on 2026-12-30, in 29 days (renewed 30 days ahead)"},
		{"expired", Info{Verified: true, NotAfter: now.Add(-48 * time.Hour), Hosts: ok.Hosts}, "it expired on 2026-11-29"},
		{"host missing", Info{Verified: true, NotAfter: ok.NotAfter, Hosts: []string{"127.0.0.1"}}, "it does not name db1"},
		{"not verified", Info{Problem: "not signed by the cluster CA: x"}, "not signed by the cluster CA: x"},
	}
	for _, c := range cases {
		if got := Renewal(c.in, hosts, now); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestStoreAndTLSHandshake(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "data", "tls")}
	if cfg, err := s.ClientConfig("127.0.0.1"); cfg != nil || err != nil {
		t.Fatalf("empty store: %v, %v", cfg, err)
	}
	if err := s.CreateCA("imdb", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCA("imdb", time.Now()); err == nil || !strings.Contains(err.Error(), "does not replace a CA") {
		t.Fatalf("second CreateCA: %v", err)
	}
	for _, name := range []string{"db1", "pgha"} {
		if err := s.Issue(name, Request{CommonName: name, Hosts: []string{"127.0.0.1"}, Server: name == "db1", Client: true}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{s.KeyPath(CA), s.KeyPath("db1")} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, fi.Mode(), err)
		}
	}
	if fi, _ := os.Stat(s.Dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("store dir mode %v", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Dir(s.Dir)); fi.Mode().Perm() != 0o755 {
		t.Fatalf("the store's parent (the data directory) was made with mode %v", fi.Mode())
	}

	// A real handshake: a server with db1's certificate requiring a
	// client certificate from the CA, pgha's client config verifying it.
	cert, err := tls.LoadX509KeyPair(s.CertPath("db1"), s.KeyPath("db1"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := s.ClientConfig("127.0.0.1")
	if err != nil || client == nil || len(client.Certificates) != 1 {
		t.Fatalf("client config: %v %v", client, err)
	}
	srv := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: client.RootCAs}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
			c.Close()
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("server side: %v", err)
	}

	// verify-full refuses a name the certificate does not carry.
	bad := client.Clone()
	bad.ServerName = "db9"
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	if c, err := tls.Dial("tcp", ln.Addr().String(), bad); err == nil {
		c.Close()
		t.Fatal("handshake with the wrong server name succeeded")
	} else if !strings.Contains(err.Error(), "db9") {
		t.Fatalf("wrong name: %v", err)
	}
}
