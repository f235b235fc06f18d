package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pki"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/state"
)

func (e *Env) certStore() pki.Store { return pki.Store{Dir: e.Cfg.TLS.Dir} }

// observeTLS reads the certificate store and what each node has
// installed. The store is local files; a node's files are read through
// its runtime, whether or not its server answers.
func (e *Env) observeTLS(ctx context.Context, s *state.Cluster) {
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
		for _, name := range plan.TLSNames(e.Cfg) {
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, ObserveTimeout)
			defer cancel()
			cert, ca, err := e.Runtime.InstalledTLS(cctx, e.Cfg.Node(n.Name))
			if err == nil {
				n.TLSCert, n.TLSCA = pki.Fingerprint(cert), pki.Fingerprint(ca)
			}
		}()
	}
	wg.Wait()
}

func certState(in pki.Info) *state.Cert {
	return &state.Cert{Fingerprint: in.Fingerprint, NotAfter: in.NotAfter, Hosts: in.Hosts, Verified: in.Verified, Problem: in.Problem}
}

// issue executes certificate.issue: the CA, or one certificate.
func (e *Env) issue(a plan.Action) error {
	if a.Target == pki.CA {
		return e.certStore().CreateCA(e.Cfg.Name, e.now())
	}
	return e.certStore().Issue(a.Target, plan.CertRequest(e.Cfg, a.Target), e.now())
}

// installTLS copies n's files from the store to the node. Without TLS,
// or before the store has them (a plan that issues them comes first), it
// does nothing.
func (e *Env) installTLS(ctx context.Context, n *config.Node) error {
	if !e.Cfg.TLS.Enabled {
		return nil
	}
	ca, _, err := e.certStore().Read(pki.CA)
	if err != nil {
		return fmt.Errorf("TLS for %s: the cluster CA: %w", n.Name, err)
	}
	cert, key, err := e.certStore().Read(n.Name)
	if err != nil {
		return fmt.Errorf("TLS for %s: %w", n.Name, err)
	}
	if key == nil {
		return fmt.Errorf("TLS for %s: %s is missing", n.Name, e.certStore().KeyPath(n.Name))
	}
	if err := e.Runtime.InstallTLS(ctx, n, cert, key, ca); err != nil {
		return fmt.Errorf("install TLS files on %s: %w", n.Name, err)
	}
	return nil
}
