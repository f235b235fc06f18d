package reconcile

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pki"
	"github.com/pgha/pgha/internal/pki/certstore"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/local"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/state"
)

func (e *Env) certStore() certstore.Store { return certstore.Store{Dir: e.Cfg.TLS.Dir} }

// installedTLS is a fingerprint pair (certificate, CA) each node had
// installed when last read.
type installedTLS = reused[installedFingerprints]

type installedFingerprints struct{ cert, ca string }

// observeTLS reads the certificate store and what each node has
// installed. The store is local files; a node's files are read through
// its runtime, whether or not its server answers. A quick observation
// reuses a node's read younger than quickReuse.
func (e *Env) observeTLS(ctx context.Context, s *state.Cluster, quick bool) {
	if !e.Cfg.TLS.Enabled {
		return
	}
	st := &state.TLS{Dir: e.Cfg.TLS.Dir, Certs: map[string]*state.Cert{}}
	s.TLS = st
	now := e.now()
	caPEM, caKey, err := e.certStore().Read(pki.CA)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		st.Error = err.Error()
		return
	default:
		in := pki.Inspect(caPEM, nil, caPEM, now)
		st.CA = certState(in)
		st.CAKey = caKey != nil
		for _, name := range e.Cfg.CertNames() {
			cert, key, err := e.certStore().Read(name)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				st.Error = err.Error()
				return
			}
			if key == nil {
				st.Certs[name] = &state.Cert{Problem: "its key " + e.certStore().KeyPath(name) + " is missing"}
				continue
			}
			st.Certs[name] = certState(pki.Inspect(cert, key, caPEM, now))
		}
	}
	var wg sync.WaitGroup
	for _, n := range s.Nodes {
		if !n.Running && (n.Container == nil || !n.Container.Running) {
			continue
		}
		if r, ok := e.installed.get(n.Name, time.Now()); quick && ok {
			n.TLSCert, n.TLSCA = r.cert, r.ca
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, ObserveTimeout)
			defer cancel()
			at := time.Now()
			cert, ca, err := e.Runtime.InstalledTLS(cctx, e.Cfg.Node(n.Name))
			if err != nil {
				n.TLSFilesError = fmt.Sprintf("read the installed certificate: %v", err)
				return
			}
			n.TLSCert, n.TLSCA = pki.Fingerprint(cert), pki.Fingerprint(ca)
			e.installed.put(n.Name, installedFingerprints{cert: n.TLSCert, ca: n.TLSCA}, at)
		}()
	}
	wg.Wait()
}

func certState(in pki.Info) *state.Cert {
	return &state.Cert{Fingerprint: in.Fingerprint, NotAfter: in.NotAfter, Hosts: in.Hosts, Verified: in.Verified, Problem: in.Problem}
}

// issue executes certificate.issue: the CA, or one certificate. Dates
// come from the wall clock, never Env.Now: servers check them against
// theirs.
func (e *Env) issue(a plan.Action) error {
	if a.Change == plan.Create && e.issued(a.Target) {
		// Made meanwhile: by the bootstrap of this apply (a saved plan
		// from before the CA existed) or by another pgha. Kept.
		e.note("%s already holds %s; kept", e.Cfg.TLS.Dir, filepath.Base(e.certStore().CertPath(a.Target)))
		return nil
	}
	if a.Target == pki.CA {
		return e.certStore().CreateCA(e.Cfg.Name, time.Now())
	}
	return e.certStore().Issue(a.Target, plan.CertRequest(e.Cfg, a.Target), time.Now())
}

// issued reports whether the store holds a certificate for name that
// verifies against its CA (the CA: that it is there at all).
func (e *Env) issued(name string) bool {
	ca, _, err := e.certStore().Read(pki.CA)
	if err != nil {
		return false
	}
	if name == pki.CA {
		return true
	}
	cert, key, err := e.certStore().Read(name)
	return err == nil && key != nil && pki.Inspect(cert, key, ca, time.Now()).Verified
}

// issueAndUse executes certificate.issue; a renewed Redis certificate is
// also handed to the running Redis.
func (e *Env) issueAndUse(ctx context.Context, a plan.Action) error {
	if err := e.issue(a); err != nil {
		return err
	}
	if a.Target == config.CertRedis && a.Change == plan.Update && e.Cfg.Catalog != nil && e.Cfg.Catalog.Managed {
		return e.renewRedis(ctx)
	}
	return nil
}

// nodeTLS reads n's certificate and key and the cluster CA from the store.
func (e *Env) nodeTLS(n *config.Node) (cert, key, ca []byte, err error) {
	ca, _, err = e.certStore().Read(pki.CA)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("TLS for %s: the cluster CA: %w", n.Name, err)
	}
	cert, key, err = e.certStore().Read(n.Name)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("TLS for %s: %w", n.Name, err)
	}
	if key == nil {
		return nil, nil, nil, fmt.Errorf("TLS for %s: %s is missing", n.Name, e.certStore().KeyPath(n.Name))
	}
	return cert, key, ca, nil
}

// installTLS copies n's files from the store to the node. Without TLS,
// or before the store has them (a plan that issues them comes first), it
// does nothing.
func (e *Env) installTLS(ctx context.Context, n *config.Node) error {
	if !e.Cfg.TLS.Enabled {
		return nil
	}
	cert, key, ca, err := e.nodeTLS(n)
	if err != nil {
		return err
	}
	if err := e.Runtime.InstallTLS(ctx, n, cert, key, ca); err != nil {
		return fmt.Errorf("install TLS files on %s: %w", n.Name, err)
	}
	return nil
}

// bootstrapTLS makes what taking the lock needs when the managed Redis
// speaks TLS: the CA and the certificates of Redis and pgha, when the
// store has none. Like starting the catalog, it happens before the plan,
// which shows and renews everything else.
func (e *Env) bootstrapTLS(out io.Writer) error {
	c := e.Cfg
	if !c.TLS.Enabled || c.Catalog == nil || !c.Catalog.Managed {
		return nil
	}
	st := e.certStore()
	if _, err := os.Stat(st.CertPath(pki.CA)); errors.Is(err, os.ErrNotExist) {
		if err := st.CreateCA(c.Name, time.Now()); err != nil {
			return fmt.Errorf("create the cluster CA: %w", err)
		}
		fmt.Fprintf(out, "Created the cluster's certificate authority in %s (the catalog speaks TLS).\n", c.TLS.Dir)
	}
	for _, name := range []string{config.CertRedis, config.CertPgha} {
		if _, err := os.Stat(st.CertPath(name)); err == nil {
			continue
		}
		if err := st.Issue(name, plan.CertRequest(c, name), time.Now()); err != nil {
			return fmt.Errorf("issue the certificate of %s: %w", name, err)
		}
		fmt.Fprintf(out, "Issued the certificate of %s in %s.\n", name, c.TLS.Dir)
	}
	return nil
}

// redisTLS is what the managed Redis needs to speak TLS: its files from
// the store and how pgha checks it answers; nil without TLS or before
// the store holds them (the Redis then starts in plain text).
func redisTLS(c *config.Cluster) (*local.RedisTLS, error) {
	if !c.TLS.Enabled || c.Catalog == nil || !c.Catalog.Managed {
		return nil, nil
	}
	st := certstore.Store{Dir: c.TLS.Dir}
	ca, _, err := st.Read(pki.CA)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cert, key, err := st.Read(config.CertRedis)
	if errors.Is(err, os.ErrNotExist) || (err == nil && key == nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(c.Catalog.Address)
	client, err := st.ClientConfig(host)
	if err != nil {
		return nil, err
	}
	return &local.RedisTLS{Cert: cert, Key: key, CA: ca, Client: client}, nil
}

// catalogTLS is how pgha's catalog client dials the managed Redis.
func catalogTLS(c *config.Cluster) func() (*tls.Config, error) {
	if !c.TLS.Enabled || c.Catalog == nil || !c.Catalog.Managed {
		return nil
	}
	host, _, _ := net.SplitHostPort(c.Catalog.Address)
	return func() (*tls.Config, error) { return certstore.Store{Dir: c.TLS.Dir}.ClientConfig(host) }
}

// renewRedis puts a renewed certificate in the running Redis's hands.
func (e *Env) renewRedis(ctx context.Context) error {
	if err := e.Runtime.StartCatalog(ctx); err != nil {
		return err
	}
	if e.Catalog == nil {
		return nil
	}
	return e.Catalog.ReloadTLS(ctx, e.Cfg.RedisTLS().Cert)
}

// requireTLS reports whether pgha must reach node over TLS only: TLS is
// on and the store records that the node has served it (see
// recordServing and confirmTLS). A node TLS is being turned on for has
// no record yet and is still reached in plain text until its reload;
// with TLS turned off nothing is required.
func (e *Env) requireTLS(node string) bool {
	return e.Cfg.TLS.Enabled && e.certStore().Serving(node)
}

// recordServing keeps the store's records in step with what pgha's own
// sessions found: a node reached over verified TLS is recorded as
// serving TLS (a cluster made before the record existed gets it at its
// first observation), and with TLS turned off a node that answered in
// plain text loses its record, so that turning TLS on again later goes
// through plain text until the reload. A store pgha cannot write (a
// read-only operator running plan) keeps what it had: the record is a
// protection, its absence the fallback pgha had before.
func (e *Env) recordServing(s *state.Cluster) {
	st := e.certStore()
	for _, n := range s.Nodes {
		switch {
		case !n.Reachable:
		case e.Cfg.TLS.Enabled && n.TLSSession:
			_ = st.MarkServing(n.Name)
		case !e.Cfg.TLS.Enabled && !n.TLSSession:
			_ = st.ForgetServing(n.Name)
		}
	}
}

// confirmTLSTimeout bounds the wait for a node that pgha configured with
// ssl = on to serve TLS (a reload is asynchronous). A variable for tests.
var confirmTLSTimeout = 10 * time.Second

// confirmTLS runs after pgha started or reloaded n with its settings:
// with TLS on, n must now serve TLS that verifies, and the store records
// it, so that no later connection falls back to plain text. A node that
// still refuses TLS fails the action: its certificate files or settings
// did not take (its log says why), or someone in between answers for it.
func (e *Env) confirmTLS(ctx context.Context, n *config.Node) error {
	if !e.Cfg.TLS.Enabled || e.requireTLS(n.Name) {
		return nil
	}
	ep := e.superuser(n)
	if ep.TLS == nil {
		return nil // no CA yet: a plan that issues one comes first
	}
	ep.RequireTLS = true
	wctx, cancel := context.WithTimeout(ctx, confirmTLSTimeout)
	defer cancel()
	var err error
	for {
		aerr := e.db().Exec(wctx, ep, "SELECT 1")
		if aerr == nil {
			break
		}
		// An attempt the deadline cut short says nothing about the
		// server: the reason is the last attempt that got an answer.
		if err == nil || wctx.Err() == nil {
			err = aerr
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var down *postgres.DowngradeError
			if errors.As(err, &down) {
				return fmt.Errorf("%s still refuses TLS %s after pgha configured it with ssl = on (see %s): its certificate files or settings did not take, or someone in between answers for it", n.Name, confirmTLSTimeout, e.Cfg.LogFile(n))
			}
			return fmt.Errorf("%s over TLS after pgha configured it with ssl = on: %w", n.Name, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := e.certStore().MarkServing(n.Name); err != nil {
		e.note("%s serves TLS, but the store cannot record it: %v", n.Name, err)
	}
	return nil
}
