// Package certstore keeps a cluster's certificates on disk: the CA and
// every node's, pgha's and the managed Redis's PEM files, and the record
// of which nodes pgha has seen serve TLS. It is the I/O half of pki, kept
// apart so that the planner, which needs only pki's pure rules, imports
// nothing that touches the disk.
package certstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/pgha/pgha/internal/pki"
	"os"
	"path/filepath"
	"time"
)

// Store is a directory of PEM files: ca.crt and ca.key, and NAME.crt and
// NAME.key for every certificate (a node's name, "pgha", "redis"). Keys
// are 0600 and the directory 0700, owned by whoever runs pgha; the
// runtimes copy a node's files to where its server reads them.
type Store struct{ Dir string }

// CertPath and KeyPath are where a name's files live in the store.
func (s Store) CertPath(name string) string { return filepath.Join(s.Dir, name+".crt") }
func (s Store) KeyPath(name string) string  { return filepath.Join(s.Dir, name+".key") }

// Read returns a name's certificate and key; a missing key is nil
// without error (a CA given without its key, a certificate kept
// elsewhere), a missing certificate is an error wrapping os.ErrNotExist.
func (s Store) Read(name string) (cert, key []byte, err error) {
	cert, err = os.ReadFile(s.CertPath(name))
	if err != nil {
		return nil, nil, err
	}
	key, err = os.ReadFile(s.KeyPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return cert, nil, nil
	}
	return cert, key, err
}

// CreateCA makes the cluster's authority. An existing one is never
// replaced: every certificate and every node's trust hangs on it.
func (s Store) CreateCA(cluster string, now time.Time) error {
	if _, err := os.Stat(s.CertPath(pki.CA)); err == nil {
		return fmt.Errorf("%s exists; pgha does not replace a CA", s.CertPath(pki.CA))
	}
	cert, key, err := pki.NewCA(cluster, now)
	if err != nil {
		return err
	}
	return s.write(pki.CA, cert, key)
}

// Issue signs a new certificate for name with the store's CA, replacing
// the previous one.
func (s Store) Issue(name string, req pki.Request, now time.Time) error {
	caCert, caKey, err := s.Read(pki.CA)
	if err != nil {
		return fmt.Errorf("read the CA: %w", err)
	}
	if caKey == nil {
		return fmt.Errorf("%s is absent: certificates of a CA given without its key are issued by whoever holds it", s.KeyPath(pki.CA))
	}
	cert, key, err := pki.Issue(caCert, caKey, req, now)
	if err != nil {
		return err
	}
	return s.write(name, cert, key)
}

// write puts a key then its certificate in place, each atomically (a
// reader sees an old or a new file, never half of one).
func (s Store) write(name string, cert, key []byte) error {
	// Parents are made traversable (the data directory holds the nodes,
	// which other users run); the store itself is private.
	if err := os.MkdirAll(filepath.Dir(s.Dir), 0o755); err != nil {
		return fmt.Errorf("TLS store: %w", err)
	}
	if err := os.Mkdir(s.Dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("TLS store: %w", err)
	}
	if err := writeAtomic(s.KeyPath(name), key, 0o600); err != nil {
		return err
	}
	return writeAtomic(s.CertPath(name), cert, 0o644)
}

func writeAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ClientConfig is how pgha itself connects to a server of the cluster:
// the server's certificate must chain to the store's CA and name
// serverName (libpq's verify-full), and pgha presents its own "pgha"
// certificate when one is there (replication lines ask for one). It
// returns nil, nil when the store has no CA yet: nothing to verify
// against, and no server of the cluster has TLS either.
func (s Store) ClientConfig(serverName string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(s.CertPath(pki.CA))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("TLS: %s holds no certificate", s.CertPath(pki.CA))
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if pair, err := tls.LoadX509KeyPair(s.CertPath("pgha"), s.KeyPath("pgha")); err == nil {
		cfg.Certificates = []tls.Certificate{pair}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("TLS: pgha's client certificate: %w", err)
	}
	return cfg, nil
}

// ServingPath is where the store records that the server called name has
// been seen serving TLS with the cluster's certificate.
func (s Store) ServingPath(name string) string { return filepath.Join(s.Dir, name+".serving") }

// MarkServing records that pgha had a TLS session with the server called
// name that verified against the store's CA. From then on pgha requires
// TLS of that server and never falls back to plain text: a refusal means
// a server whose ssl was turned off behind pgha's back, or someone in
// between answering for it. The record lives in the store (0700, pgha's
// own), where nobody on the network can write it.
func (s Store) MarkServing(name string) error {
	if _, err := os.Stat(s.ServingPath(name)); err == nil {
		return nil
	}
	if _, err := os.Stat(s.Dir); err != nil {
		return fmt.Errorf("TLS store: %w", err)
	}
	return writeAtomic(s.ServingPath(name), []byte("pgha has had a verified TLS session with "+name+" and requires TLS of it\n"), 0o600)
}

// Serving reports whether name was recorded by MarkServing.
func (s Store) Serving(name string) bool {
	_, err := os.Stat(s.ServingPath(name))
	return err == nil
}

// ForgetServing drops the record: pgha is turning ssl off on that server
// (tls { enabled = false }), which will then answer in plain text.
func (s Store) ForgetServing(name string) error {
	if err := os.Remove(s.ServingPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("TLS store: %w", err)
	}
	return nil
}
