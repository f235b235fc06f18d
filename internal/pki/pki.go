// Package pki is pgha's small certificate authority: one ECDSA P-256 CA per
// cluster and the certificates it signs for the nodes, pgha itself and the
// managed Redis, kept as PEM files in one directory (the store).
//
// It exists so that TLS needs nothing outside pgha (no openssl, no
// cfssl): the store is plain files an operator can also fill by hand,
// and everything a plan needs to know about them (present, signed by the
// CA, names, expiry) is read by Inspect without touching a server.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"time"
)

const (
	// CAValidity is how long a CA pgha creates lives.
	CAValidity = 10 * 365 * 24 * time.Hour
	// CertValidity is how long a node, client or Redis certificate lives.
	CertValidity = 365 * 24 * time.Hour
	// RenewBefore is how close to its expiry a certificate is renewed: a
	// month leaves room for a missed week of applies.
	RenewBefore = 30 * 24 * time.Hour
	// backdate covers clocks a little behind pgha's.
	backdate = 5 * time.Minute
)

// Request says what certificate to issue.
// CA is the name of the authority's files in a certificate store.
const CA = "ca"

type Request struct {
	CommonName string
	// Hosts are DNS names and IP addresses, written to the SAN extension
	// that verify-full checks.
	Hosts []string
	// Server and Client choose the extended key usages.
	Server, Client bool
}

// NewCA creates a self-signed CA named after the cluster.
func NewCA(cluster string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pgha CA " + cluster, Organization: []string{"pgha"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// Issue signs a new key pair for req with the CA.
func Issue(caCertPEM, caKeyPEM []byte, req Request, now time.Time) (certPEM, keyPEM []byte, err error) {
	ca, err := ParseCert(caCertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	caKey, err := parseKey(caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: []string{"pgha"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(CertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter // a certificate cannot outlive its CA
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, h := range req.Hosts {
		// netip rather than net, so that pki (which plan imports to
		// inspect certificates) imports nothing that can dial; a zone
		// is refused as net.ParseIP refuses it.
		if ip, err := netip.ParseAddr(h); err == nil && ip.Zone() == "" {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate for %s: %w", req.CommonName, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s, nil
}

// encodeKey writes a PKCS#8 key, which PostgreSQL, libpq, Redis and Go all read.
func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(keyPEM []byte) (any, error) {
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	return x509.ParsePKCS1PrivateKey(b.Bytes)
}

// ParseCert reads the first certificate of a PEM file.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no CERTIFICATE PEM block")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// Fingerprint is the SHA-256 of a PEM file's first certificate, in hex;
// "" when it holds none. It identifies what a node has installed.
func Fingerprint(certPEM []byte) string {
	c, err := ParseCert(certPEM)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// Info is what a plan needs to know about one certificate.
type Info struct {
	Fingerprint string
	NotAfter    time.Time
	// Hosts are the SAN DNS names and IP addresses.
	Hosts []string
	// Verified: the certificate chains to the CA it was checked against,
	// and its key is the one beside it.
	Verified bool
	// Problem says why it is not Verified.
	Problem string
}

// Inspect checks a certificate and its key against the CA.
func Inspect(certPEM, keyPEM, caPEM []byte, now time.Time) Info {
	c, err := ParseCert(certPEM)
	if err != nil {
		return Info{Problem: "unreadable certificate: " + err.Error()}
	}
	sum := sha256.Sum256(c.Raw)
	in := Info{Fingerprint: hex.EncodeToString(sum[:]), NotAfter: c.NotAfter.UTC()}
	in.Hosts = append(in.Hosts, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		in.Hosts = append(in.Hosts, ip.String())
	}
	if err := Verify(certPEM, caPEM, now); err != nil {
		in.Problem = err.Error()
		return in
	}
	if keyPEM != nil {
		if err := keyMatches(c, keyPEM); err != nil {
			in.Problem = err.Error()
			return in
		}
	}
	in.Verified = true
	return in
}

// Verify checks that certPEM chains to caPEM at now (for any usage: the
// same certificate serves and authenticates a node).
func Verify(certPEM, caPEM []byte, now time.Time) error {
	c, err := ParseCert(certPEM)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("the CA file holds no certificate")
	}
	_, err = c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("not signed by the cluster CA: %w", err)
	}
	return nil
}

func keyMatches(c *x509.Certificate, keyPEM []byte) error {
	k, err := parseKey(keyPEM)
	if err != nil {
		return fmt.Errorf("unreadable key: %w", err)
	}
	pub, ok := k.(crypto.Signer)
	if !ok {
		return errors.New("unsupported key type")
	}
	want, err := x509.MarshalPKIXPublicKey(c.PublicKey)
	if err != nil {
		return err
	}
	got, err := x509.MarshalPKIXPublicKey(pub.Public())
	if err != nil || !bytes.Equal(want, got) {
		return errors.New("the key does not belong to the certificate")
	}
	return nil
}

// Renewal says why a certificate must be issued again ("" when it need
// not): it is not verified, expires within RenewBefore, or lacks a host.
func Renewal(in Info, hosts []string, now time.Time) string {
	switch {
	case !in.Verified:
		return in.Problem
	case in.NotAfter.Sub(now) < RenewBefore:
		days := int(in.NotAfter.Sub(now).Hours() / 24)
		if days < 0 {
			return fmt.Sprintf("it expired on %s", in.NotAfter.Format("2006-01-02"))
		}
		return fmt.Sprintf("it expires on %s, in %d days (renewed %d days ahead)", in.NotAfter.Format("2006-01-02"), days, int(RenewBefore.Hours()/24))
	}
	var missing []string
	for _, h := range hosts {
		if !slices.ContainsFunc(in.Hosts, func(x string) bool { return strings.EqualFold(x, h) }) {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		return "it does not name " + strings.Join(missing, ", ")
	}
	return ""
}
