package clusterfile

import (
	"fmt"
	"net/url"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/pgha/pgha/config"
)

// defaultAuthorityTTL and minAuthorityTTL mirror providers/etcd's
// DefaultTTL and MinTTL (config does not import providers).
const (
	defaultAuthorityTTL = 9 * time.Second
	minAuthorityTTL     = 2 * time.Second
)

// authority decodes authority "etcd" { endpoints, username, password,
// ttl, ca_file, cert_file, key_file }. It is called authority, not a
// second catalog kind: it holds what decides (the lock, the leases, the
// record), while the catalog "redis" keeps the backup list and history,
// and a file may declare both.
func (d *decoder) authority(b *hcl.Block) *config.Authority {
	a := &config.Authority{Kind: b.Labels[0], DeclRange: b.DefRange, TTL: defaultAuthorityTTL}
	if a.Kind != "etcd" {
		d.errorAt(b.LabelRanges[0], "Unsupported authority", fmt.Sprintf("authority %q is not supported; use authority \"etcd\".", a.Kind))
		return nil
	}
	var passwordRange hcl.Range
	d.attrs(b.Body, authoritySchema, func(name string, at *hcl.Attribute) {
		switch name {
		case "endpoints":
			v, ok := d.eval(at, cty.List(cty.String), &a.Endpoints)
			if !ok {
				return
			}
			if v.LengthInt() == 0 {
				d.errorAt(at.Expr.Range(), "No etcd endpoints", "endpoints lists the etcd members' client URLs, e.g. [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\", \"http://10.0.0.3:2379\"].")
				return
			}
			seen := map[string]bool{}
			for _, ev := range v.AsValueSlice() {
				ep := ev.AsString()
				u, err := url.Parse(ep)
				switch {
				case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/"):
					d.errorAt(at.Expr.Range(), "Invalid etcd endpoint",
						fmt.Sprintf("%s is not an etcd client URL; write for example \"http://127.0.0.1:2379\" (https:// for TLS).", d.show(&a.Endpoints, ep)))
					return
				case seen[ep]:
					d.errorAt(at.Expr.Range(), "Duplicate etcd endpoint", fmt.Sprintf("%s is listed twice.", d.show(&a.Endpoints, ep)))
					return
				}
				seen[ep] = true
				a.Endpoints = append(a.Endpoints, ep)
			}
		case "username":
			d.str(at, &a.Username)
		case "password":
			if s, ok := d.secret(at); ok {
				a.Password = s
				passwordRange = at.Expr.Range()
			}
		case "ttl":
			var s string
			if !d.str(at, &s) {
				return
			}
			v, err := time.ParseDuration(s)
			switch {
			case err != nil:
				d.errorAt(at.Expr.Range(), "Invalid duration",
					fmt.Sprintf("ttl = %s is not a duration; write for example \"9s\".", d.show(&s, s)))
			case v < minAuthorityTTL || v%time.Second != 0:
				d.errorAt(at.Expr.Range(), "Invalid ttl",
					fmt.Sprintf("ttl = %s: etcd grants leases in whole seconds, 2 s at least with its default timings; a lease must also outlive an etcd election (1-3 s), so write \"9s\" (the default) or more.", d.show(&s, s)))
			default:
				a.TTL = v
			}
		case "ca_file":
			d.filePath(at, &a.CAFile)
		case "cert_file":
			d.filePath(at, &a.CertFile)
		case "key_file":
			d.filePath(at, &a.KeyFile)
		}
	})
	if a.Password.IsSet() && a.Username == "" {
		d.errorAt(passwordRange, "Password without username", "etcd authenticates a user by name and password: declare username too.")
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		d.errorAt(a.DeclRange, "Incomplete client certificate", "cert_file and key_file go together: declare both or neither.")
	}
	tlsFiles := a.CAFile != "" || a.CertFile != ""
	for _, ep := range a.Endpoints {
		if u, _ := url.Parse(ep); u != nil && u.Scheme == "http" && tlsFiles {
			d.errorAt(d.rangeOf(&a.Endpoints, a.DeclRange), "TLS files with http endpoints",
				fmt.Sprintf("ca_file, cert_file or key_file are declared, but %s is plain http: write https:// for every endpoint.", d.show(&a.Endpoints, ep)))
			break
		}
	}
	return a
}
