package pki

import (
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
	hosts := []string{"127.0.0.1", "localhost", "pgha-imdb-db1", "10.0.0.5", "::1"}
	cert, key, err := Issue(caCert, caKey, Request{CommonName: "db1", Hosts: hosts, Server: true, Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	in := Inspect(cert, key, caCert, now)
	if !in.Verified {
		t.Fatalf("not verified: %s", in.Problem)
	}
	want := []string{"localhost", "pgha-imdb-db1", "127.0.0.1", "10.0.0.5", "::1"}
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
