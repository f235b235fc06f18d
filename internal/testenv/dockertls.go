package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/pki"
)

// DockerTLS is this machine's Docker engine served on a TCP address with
// mutual TLS, the way `dockerd --tlsverify --tlscacert ca.pem --tlscert
// server-cert.pem --tlskey server-key.pem -H tcp://ADDR` serves it on
// another host: the client must present a certificate of the test CA, and
// the engine's certificate names ADDR's IP. The TLS endpoint is a relay in
// front of the local socket rather than a second dockerd: what crosses it
// is byte for byte what a remote engine's port carries (API calls,
// hijacked exec streams), and a test needs no second daemon running as
// root nor a copy of its image. A second dockerd does run on this machine
// (own --data-root and --exec-root, --bridge=none --iptables=false: ready
// in 5.7 s, the 483 MB test image loaded into it in 34 s, a container with
// a published port in 5 s, measured 2026-12-01 under load), so a test
// with dockerd itself terminating TLS is possible; see the report of
// issue 14's remote-engine work.
type DockerTLS struct {
	// Host is the engine as cluster.hcl and DOCKER_HOST write it:
	// tcp://IP:PORT.
	Host string
	// IP is the address the engine is reached at, where node ports are
	// published (bind) too.
	IP string
	// Dir holds the client's files as DOCKER_CERT_PATH does: ca.pem (the
	// CA that signed the engine's certificate), cert.pem and key.pem
	// (pgha's client certificate).
	Dir                       string
	CAFile, CertFile, KeyFile string

	caCert, caKey []byte
	l             net.Listener
	handshakes    atomic.Int64
	refused       atomic.Int64
	mu            sync.Mutex
	conns         map[net.Conn]bool
	wg            sync.WaitGroup
}

// StartDockerTLS serves the local engine (DOCKER_HOST when it is a unix
// socket, else /var/run/docker.sock) with mutual TLS on a free port of
// ip, which should be a loopback address other than 127.0.0.1 (such as
// 127.0.0.2) so that a test sees nodes reached at the engine's address
// rather than by accident at this host's usual loopback. It stops when
// the test ends.
func StartDockerTLS(t testing.TB, ip string) *DockerTLS {
	t.Helper()
	sock := "/var/run/docker.sock"
	if h, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		sock = h
	}
	if c, err := net.DialTimeout("unix", sock, 5*time.Second); err != nil {
		t.Fatalf("the Docker engine's socket %s does not answer (%v); start dockerd (on Debian: apt-get install docker.io)", sock, err)
	} else {
		c.Close()
	}
	dir := filepath.Join(Dir(t), "docker-certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caCert, caKey, err := pki.NewCA("docker-engine", now)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := pki.Issue(caCert, caKey, pki.Request{CommonName: "dockerd", Hosts: []string{ip}, Server: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	d := &DockerTLS{IP: ip, Dir: dir, caCert: caCert, caKey: caKey, conns: map[net.Conn]bool{}, CAFile: filepath.Join(dir, "ca.pem")}
	d.CertFile, d.KeyFile = d.IssueClient(t, dir, "pgha")
	if err := os.WriteFile(d.CAFile, caCert, 0o644); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caCert)
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	for range 20 {
		port := FreePort(t)
		l, err := tls.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), cfg)
		if err != nil {
			continue
		}
		d.l = l
		d.Host = "tcp://" + net.JoinHostPort(ip, strconv.Itoa(port))
		break
	}
	if d.l == nil {
		t.Fatalf("no free port on %s for the Docker TLS endpoint (is %s a loopback address here?)", ip, ip)
	}
	d.wg.Add(1)
	go d.serve(sock)
	t.Cleanup(d.stop)
	return d
}

// IssueClient writes a client certificate of the engine's CA into dir as
// cert.pem and key.pem (Docker's names) and returns their paths.
func (d *DockerTLS) IssueClient(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	cert, key, err := pki.Issue(d.caCert, d.caKey, pki.Request{CommonName: name, Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return writePair(t, dir, cert, key)
}

// ForeignClient writes, into dir, a client certificate of another CA, one
// the engine does not trust, and returns the paths of cert.pem and key.pem.
func ForeignClient(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	now := time.Now()
	caCert, caKey, err := pki.NewCA("someone-else", now)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.Issue(caCert, caKey, pki.Request{CommonName: "pgha", Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	return writePair(t, dir, cert, key)
}

func writePair(t testing.TB, dir string, cert, key []byte) (string, string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cf, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return cf, kf
}

// Handshakes is how many clients completed the TLS handshake with a
// certificate the engine trusts; Refused, how many presented none or an
// untrusted one.
func (d *DockerTLS) Handshakes() int64 { return d.handshakes.Load() }
func (d *DockerTLS) Refused() int64    { return d.refused.Load() }

func (d *DockerTLS) serve(sock string) {
	defer d.wg.Done()
	for {
		c, err := d.l.Accept()
		if err != nil {
			return // closed by stop
		}
		d.track(c, true)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer d.track(c, false)
			d.relay(c.(*tls.Conn), sock)
		}()
	}
}

func (d *DockerTLS) track(c net.Conn, add bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if add {
		d.conns[c] = true
	} else {
		delete(d.conns, c)
	}
}

// relay copies between one TLS client and the engine's socket, passing a
// half-close on in each direction: a hijacked exec ends its stdin with
// CloseWrite and still reads the command's output.
func (d *DockerTLS) relay(c *tls.Conn, sock string) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := c.HandshakeContext(ctx)
	cancel()
	if err != nil {
		d.refused.Add(1)
		return
	}
	d.handshakes.Add(1)
	e, err := net.Dial("unix", sock)
	if err != nil {
		return
	}
	defer e.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(e, c)
		_ = e.(*net.UnixConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, e)
	_ = c.CloseWrite()
	<-done
}

// stop closes the listener and every open connection and waits for the
// relays to end.
func (d *DockerTLS) stop() {
	_ = d.l.Close()
	d.mu.Lock()
	for c := range d.conns {
		_ = c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}
