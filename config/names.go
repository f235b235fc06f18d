package config

import (
	"path/filepath"
	"slices"
	"strconv"

	"github.com/pgha/pgha/internal/pgconf"
)

// Names derived from the cluster: where a node is reached, what its
// container is called, where its passfile, log and TLS files live, and
// the conninfo a standby follows its primary with. They are pure
// functions of cluster.hcl, so the planner (which writes them into
// settings and plan text) and the executors (which use them) read the
// same answer from one place.

// DockerPort is the port PostgreSQL listens on inside a node container.
const DockerPort = 5432

// PeerEndpoint is how the other nodes reach n: the node's host and port on
// the local runtime, the container's name on the cluster network on Docker.
func (c *Cluster) PeerEndpoint(n *Node) (string, int) {
	if c.IsDocker() {
		return c.ContainerName(n.Name), DockerPort
	}
	return n.Host, n.Port
}

// AdminEndpoint is how pgha reaches n: directly on the local runtime,
// through the published port on Docker, on the engine's host.
func (c *Cluster) AdminEndpoint(n *Node) (string, int) {
	if c.IsDocker() {
		return c.Runtime.Docker.PublishedHost(), n.Port
	}
	return n.Host, n.Port
}

// ContainerName is the name of a node's (or "redis") container, and of
// its volume.
func (c *Cluster) ContainerName(name string) string { return c.Runtime.Docker.Prefix + name }

// PassfilePath is where pgha keeps the replication credentials that
// primary_conninfo and pg_basebackup read, so no password is written into a
// PostgreSQL configuration file. On Docker it lives in each node's volume.
func (c *Cluster) PassfilePath() string {
	if c.IsDocker() {
		return DockerVolumeDir + "/pgpass"
	}
	return c.Runtime.DataDir + "/.pgha/pgpass"
}

// LogFile is where a node's server log goes.
func (c *Cluster) LogFile(n *Node) string {
	if c.IsDocker() {
		return DockerVolumeDir + "/log/postgresql.log"
	}
	return c.Runtime.DataDir + "/log/" + n.Name + ".log"
}

// TLSFiles are where a server reads its certificate, key and the cluster
// CA.
type TLSFiles struct{ Cert, Key, CA string }

// NodeTLS is where n's TLS files are installed: beside the passfile,
// outside the data directory, so that a clone or pg_rewind (which copy
// data directories) never brings another node's key.
func (c *Cluster) NodeTLS(n *Node) TLSFiles {
	if c.IsDocker() {
		d := DockerVolumeDir + "/tls"
		return TLSFiles{Cert: d + "/server.crt", Key: d + "/server.key", CA: d + "/ca.crt"}
	}
	d := filepath.Join(filepath.Dir(c.PassfilePath()), "tls", n.Name)
	return TLSFiles{Cert: d + "/server.crt", Key: d + "/server.key", CA: d + "/ca.crt"}
}

// RedisTLS is where the managed Redis reads its TLS files: in its data
// directory (local) or volume (docker).
func (c *Cluster) RedisTLS() TLSFiles {
	d := c.Catalog.DataDir
	if c.IsDocker() {
		d = "/data"
	}
	d += "/tls"
	return TLSFiles{Cert: d + "/redis.crt", Key: d + "/redis.key", CA: d + "/ca.crt"}
}

// PrimaryConninfo is the connection string a standby uses to follow
// primary. With TLS the standby checks the primary's certificate against
// the cluster CA and its name (verify-full), and presents its own, which
// the primary's replication lines require.
func (c *Cluster) PrimaryConninfo(standby, primary *Node) string {
	host, port := c.PeerEndpoint(primary)
	kv := []pgconf.KV{{Key: "host", Value: host}, {Key: "port", Value: strconv.Itoa(port)},
		{Key: "user", Value: c.Replication.User}, {Key: "application_name", Value: standby.Name},
		{Key: "passfile", Value: c.PassfilePath()}}
	if !c.TLS.Enabled {
		return pgconf.Conninfo(append(kv, pgconf.KV{Key: "sslmode", Value: "prefer"})...)
	}
	f := c.NodeTLS(standby)
	return pgconf.Conninfo(append(kv, pgconf.KV{Key: "sslmode", Value: "verify-full"}, pgconf.KV{Key: "sslrootcert", Value: f.CA},
		pgconf.KV{Key: "sslcert", Value: f.Cert}, pgconf.KV{Key: "sslkey", Value: f.Key})...)
}

// LibpqTLS is the environment that gives a libpq client run on n's
// behalf (pg_basebackup, pg_rewind, pg_dumpall) the same TLS as n's
// primary_conninfo; nil without TLS.
func (c *Cluster) LibpqTLS(n *Node) []string {
	if !c.TLS.Enabled {
		return nil
	}
	f := c.NodeTLS(n)
	return []string{"PGSSLMODE=verify-full", "PGSSLROOTCERT=" + f.CA, "PGSSLCERT=" + f.Cert, "PGSSLKEY=" + f.Key}
}

// Names of the certificates in the TLS store that are not a node's.
const (
	CertPgha  = "pgha"     // pgha's client certificate (replication lines ask for one)
	CertRedis = "redis"    // the managed Redis's server certificate
	CertAPI   = "pgha-api" // the server certificate of `pgha watch`'s API (api { tls })
)

// CertNames lists the certificates the store must hold: one per node,
// pgha's, and the managed Redis's.
func (c *Cluster) CertNames() []string {
	var names []string
	for _, n := range c.Nodes {
		names = append(names, n.Name)
	}
	names = append(names, CertPgha)
	if c.Catalog != nil && c.Catalog.Managed {
		names = append(names, CertRedis)
	}
	if c.API != nil && c.API.TLS {
		names = append(names, CertAPI)
	}
	return names
}

// CertHosts is every address the holder of the certificate called name
// is dialled at, by its peers or by pgha, plus loopback: a node's peer
// and admin endpoints and its host, the managed Redis's address and
// container. pgha's own certificate is a client's and names no host.
func (c *Cluster) CertHosts(name string) []string {
	var hosts []string
	switch name {
	case CertPgha:
		return nil
	case CertRedis:
		if h, _, err := SplitAddress(c.Catalog.Address); err == nil {
			hosts = append(hosts, h)
		}
		if c.IsDocker() {
			hosts = append(hosts, c.ContainerName("redis"))
		}
	case CertAPI:
		if c.API != nil {
			hosts = append(hosts, c.API.Host())
		}
	default:
		if n := c.Node(name); n != nil {
			peer, _ := c.PeerEndpoint(n)
			admin, _ := c.AdminEndpoint(n)
			hosts = append(hosts, peer, admin, n.Host)
		}
	}
	hosts = append(hosts, "127.0.0.1", "localhost")
	var out []string
	for _, h := range hosts {
		if h != "" && h != "0.0.0.0" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}
