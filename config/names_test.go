package config

import (
	"reflect"
	"testing"
)

// TestNames: every name derived from the cluster, on exact values, for
// both runtimes, with and without TLS. The planner writes these into
// settings and the executors dial and write them; a change here moves
// files on disk or breaks replication, so each value is pinned.
func TestNames(t *testing.T) {
	node := &Node{Name: "db2", Host: "10.0.0.2", Port: 5442}
	primary := &Node{Name: "db1", Host: "10.0.0.1", Port: 5441}
	local := &Cluster{Name: "c", Runtime: Runtime{Kind: "local", DataDir: "/srv/my data"},
		Replication: Replication{User: "replicator"}, Catalog: &Catalog{DataDir: "/srv/my data/redis"}}
	docker := &Cluster{Name: "c", Runtime: Runtime{Kind: "docker", DataDir: "/srv/d",
		Docker: Docker{Prefix: "pgha-c-", Bind: "0.0.0.0"}},
		Replication: Replication{User: "replicator"}, Catalog: &Catalog{DataDir: "/srv/d/redis", Address: "127.0.0.1:6390", Managed: true},
		Nodes: []*Node{primary, node}}

	type endpoint struct {
		host string
		port int
	}
	ep := func(h string, p int) endpoint { return endpoint{h, p} }
	cases := []struct {
		name string
		got  any
		want any
	}{
		{"local peer", ep(local.PeerEndpoint(node)), endpoint{"10.0.0.2", 5442}},
		{"local admin", ep(local.AdminEndpoint(node)), endpoint{"10.0.0.2", 5442}},
		{"local passfile", local.PassfilePath(), "/srv/my data/.pgha/pgpass"},
		{"local log", local.LogFile(node), "/srv/my data/log/db2.log"},
		{"local node tls", local.NodeTLS(node), TLSFiles{Cert: "/srv/my data/.pgha/tls/db2/server.crt",
			Key: "/srv/my data/.pgha/tls/db2/server.key", CA: "/srv/my data/.pgha/tls/db2/ca.crt"}},
		{"local redis tls", local.RedisTLS(), TLSFiles{Cert: "/srv/my data/redis/tls/redis.crt",
			Key: "/srv/my data/redis/tls/redis.key", CA: "/srv/my data/redis/tls/ca.crt"}},
		{"local conninfo", local.PrimaryConninfo(node, primary),
			"host=10.0.0.1 port=5441 user=replicator application_name=db2 passfile='/srv/my data/.pgha/pgpass' sslmode=prefer"},
		{"local libpq tls off", local.LibpqTLS(node), []string(nil)},
		{"local cert names", local.CertNames(), []string{CertPgha}},
		{"local cert hosts", local.CertHosts("db2"), []string{"127.0.0.1", "localhost"}}, // not a node of local: loopback only

		{"docker container", docker.ContainerName("redis"), "pgha-c-redis"},
		{"docker peer", ep(docker.PeerEndpoint(node)), endpoint{"pgha-c-db2", DockerPort}},
		{"docker admin 0.0.0.0", ep(docker.AdminEndpoint(node)), endpoint{"127.0.0.1", 5442}},
		{"docker passfile", docker.PassfilePath(), "/var/lib/pgha/pgpass"},
		{"docker log", docker.LogFile(node), "/var/lib/pgha/log/postgresql.log"},
		{"docker node tls", docker.NodeTLS(node), TLSFiles{Cert: "/var/lib/pgha/tls/server.crt",
			Key: "/var/lib/pgha/tls/server.key", CA: "/var/lib/pgha/tls/ca.crt"}},
		{"docker cert names", docker.CertNames(), []string{"db1", "db2", "pgha", "redis"}},
		{"docker cert hosts node", docker.CertHosts("db2"), []string{"pgha-c-db2", "127.0.0.1", "10.0.0.2", "localhost"}},
		{"docker cert hosts redis", docker.CertHosts(CertRedis), []string{"127.0.0.1", "pgha-c-redis", "localhost"}},
		{"docker cert hosts pgha", docker.CertHosts(CertPgha), []string(nil)},
		{"docker redis tls", docker.RedisTLS(), TLSFiles{Cert: "/data/tls/redis.crt", Key: "/data/tls/redis.key", CA: "/data/tls/ca.crt"}},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}

	docker.Runtime.Docker.Bind = "192.0.2.7"
	if h, p := docker.AdminEndpoint(node); h != "192.0.2.7" || p != 5442 {
		t.Errorf("docker admin on a bound address: %s:%d, want 192.0.2.7:5442", h, p)
	}
	docker.TLS.Enabled = true
	if got, want := docker.PrimaryConninfo(node, primary),
		"host=pgha-c-db1 port=5432 user=replicator application_name=db2 passfile=/var/lib/pgha/pgpass sslmode=verify-full"+
			" sslrootcert=/var/lib/pgha/tls/ca.crt sslcert=/var/lib/pgha/tls/server.crt sslkey=/var/lib/pgha/tls/server.key"; got != want {
		t.Errorf("docker TLS conninfo:\n%s\nwant\n%s", got, want)
	}
	if got, want := docker.LibpqTLS(node), []string{"PGSSLMODE=verify-full", "PGSSLROOTCERT=/var/lib/pgha/tls/ca.crt",
		"PGSSLCERT=/var/lib/pgha/tls/server.crt", "PGSSLKEY=/var/lib/pgha/tls/server.key"}; !reflect.DeepEqual(got, want) {
		t.Errorf("docker libpq TLS %q, want %q", got, want)
	}
}

// TestPublishedHost: where pgha dials a published port. With a tcp://
// engine the ports are on the engine's host, so "every address" (0.0.0.0)
// means the engine's name, never this host's loopback.
func TestPublishedHost(t *testing.T) {
	cases := []struct {
		host, bind, want string
	}{
		{"", "", "127.0.0.1"},
		{"", "0.0.0.0", "127.0.0.1"},
		{"unix:///var/run/docker.sock", "::", "127.0.0.1"},
		{"", "192.0.2.7", "192.0.2.7"},
		{"tcp://10.0.0.5:2376", "10.0.0.5", "10.0.0.5"},
		{"tcp://10.0.0.5:2376", "0.0.0.0", "10.0.0.5"},
		{"tcp://docker1.example.net:2376", "0.0.0.0", "docker1.example.net"},
		{"tcp://[fd00::5]:2376", "::", "fd00::5"},
		{"tcp://docker1.example.net:2376", "10.0.0.9", "10.0.0.9"},
	}
	for _, tc := range cases {
		d := Docker{Host: tc.host, Bind: tc.bind}
		if got := d.PublishedHost(); got != tc.want {
			t.Errorf("host %q bind %q: PublishedHost = %q, want %q", tc.host, tc.bind, got, tc.want)
		}
		c := &Cluster{Runtime: Runtime{Kind: "docker", Docker: d}}
		if h, p := c.AdminEndpoint(&Node{Name: "db1", Port: 5441}); h != tc.want || p != 5441 {
			t.Errorf("host %q bind %q: AdminEndpoint = %s:%d, want %s:5441", tc.host, tc.bind, h, p, tc.want)
		}
	}
	if h := (Docker{Host: "unix:///x"}).TCPHost(); h != "" {
		t.Errorf("TCPHost of a socket = %q, want empty", h)
	}
}
