package plan

import (
	"fmt"
	"strings"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pki"
	"github.com/pgha/pgha/state"
)

// CertRequest is what the certificate called name must say: node
// certificates serve and authenticate (a standby presents its own to the
// primary), and name every address a peer or pgha dials
// (config.Cluster.CertHosts), so that verify-full holds whichever way the
// node is reached. pgha's own is a client certificate only; the managed
// Redis's serves only.
func CertRequest(c *config.Cluster, name string) pki.Request {
	if name == config.CertPgha {
		return pki.Request{CommonName: name, Client: true}
	}
	return pki.Request{CommonName: name, Hosts: c.CertHosts(name), Server: true, Client: name != config.CertRedis}
}

// certificates plans the store (the CA, then every certificate that is
// missing, not from the CA, short of a host or within 30 days of its
// end) and the nodes whose installed files differ from the store's.
// They come first: servers read the files when they start or reload.
func (b *builder) certificates() {
	t := b.c.TLS
	st := b.s.TLS
	if !t.Enabled {
		return
	}
	if st == nil {
		st = &state.TLS{Dir: t.Dir}
	}
	if st.Error != "" {
		b.diag(Critical, "", "the TLS store cannot be read", st.Error)
		return
	}
	now := b.s.ObservedAt
	caID := ""
	switch {
	case st.CA == nil:
		a := newAction(CertificateIssue, Create, "", pki.CA,
			fmt.Sprintf("TLS is on and %s holds no CA: pgha creates the cluster's certificate authority", t.Dir))
		a.After = map[string]string{"key": "ECDSA P-256", "valid": "10 years", "dir": t.Dir}
		caID = b.add(a)
	case st.CA.NotAfter.Sub(now) < pki.RenewBefore:
		b.diag(Warning, "", fmt.Sprintf("the cluster CA expires on %s", st.CA.NotAfter.Format("2006-01-02")),
			"pgha does not replace a CA by itself: every node trusts it. Move "+t.Dir+" aside and apply to start a new one (a restart of every node follows).")
	}
	canIssue := caID != "" || st.CAKey
	for _, name := range b.c.CertNames() {
		req := CertRequest(b.c, name)
		cert := st.Certs[name]
		why := ""
		switch {
		case caID != "":
			if cert != nil {
				why = "the CA is new"
			}
		case cert == nil:
		default:
			why = pki.Renewal(pki.Info{Verified: cert.Verified, Problem: cert.Problem, NotAfter: cert.NotAfter, Hosts: cert.Hosts}, req.Hosts, now)
		}
		issued := ""
		if cert == nil || why != "" {
			if !canIssue {
				what := "has no certificate"
				if cert != nil {
					what = "needs a new certificate: " + why
				}
				b.diag(Critical, nodeOf(b.c, name), fmt.Sprintf("%s %s, and %s has no ca.key to issue one", name, what, t.Dir),
					fmt.Sprintf("Put %s.crt and %s.key, signed by ca.crt, into %s (names: %s), or remove tls.dir to let pgha run its own CA.",
						name, name, t.Dir, strings.Join(req.Hosts, ", ")))
				continue
			}
			change, reason := Create, fmt.Sprintf("%s has no certificate in %s", name, t.Dir)
			if cert != nil {
				change, reason = Update, fmt.Sprintf("renew the certificate of %s: %s", name, why)
			}
			a := newAction(CertificateIssue, change, nodeOf(b.c, name), name, reason)
			a.After = map[string]string{"valid": "1 year"}
			if len(req.Hosts) > 0 {
				a.After["hosts"] = strings.Join(req.Hosts, ",")
			} else {
				a.After["usage"] = "client"
			}
			if cert != nil {
				a.Before = map[string]string{"not_after": cert.NotAfter.Format("2006-01-02")}
				if len(req.Hosts) > 0 {
					a.Before["hosts"] = strings.Join(cert.Hosts, ",")
				}
			}
			a.DependsOn = deps(caID)
			issued = b.add(a)
		}
		n := b.c.Node(name)
		if n == nil {
			continue
		}
		obs := b.node(name)
		if !obs.Running && !(obs.Container != nil && obs.Container.Running && obs.Initialized) {
			continue // a start, clone or rejoin installs the files when it configures the node
		}
		var reason string
		switch {
		case issued == "" && obs.TLSFilesError != "":
			// Unknown is not absent: a read that failed (a Docker exec
			// timing out under load) says nothing of what is installed.
			// The next observation decides; nothing is planned on it.
			continue
		case issued != "":
			reason = fmt.Sprintf("%s runs; install its new certificate and reload", name)
		case obs.TLSCert == "":
			reason = fmt.Sprintf("%s has no certificate installed; install it and reload", name)
		case obs.TLSCert != cert.Fingerprint:
			reason = fmt.Sprintf("%s serves a certificate (%s…) other than the store's (%s…); install the store's and reload", name, short(obs.TLSCert), short(cert.Fingerprint))
		case obs.TLSCA != st.CA.Fingerprint:
			reason = fmt.Sprintf("%s trusts a CA (%s…) other than the cluster's (%s…); install the cluster's and reload", name, short(obs.TLSCA), short(st.CA.Fingerprint))
		default:
			continue
		}
		a := newAction(CertificateInstall, Update, name, name, reason)
		files := b.c.NodeTLS(n)
		a.After = map[string]string{"cert": files.Cert, "key": files.Key, "ca": files.CA}
		a.DependsOn = deps(issued, caID)
		b.add(a)
	}
}

func nodeOf(c *config.Cluster, name string) string {
	if c.Node(name) != nil {
		return name
	}
	return ""
}

func short(fp string) string {
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}
