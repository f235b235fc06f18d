package certstore

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/pki"
)

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
		if err := s.Issue(name, pki.Request{CommonName: name, Hosts: []string{"127.0.0.1"}, Server: name == "db1", Client: true}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{s.KeyPath(pki.CA), s.KeyPath("db1")} {
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
