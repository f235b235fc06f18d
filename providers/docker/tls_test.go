package docker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/pki"
)

// TestEngineTLS: the client side of mutual TLS with a tcp:// engine, and
// what each way of getting it wrong says. The engine here is an HTTPS
// server answering /_ping as dockerd does (the e2e test TestDockerRemoteEngine
// drives a real engine through TLS); what is under test is pgha's TLS
// configuration and its errors, which must name the engine and the
// attribute to fix, never a file's path.
func TestEngineTLS(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, caKey, err := pki.NewCA("engine", now)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, _ := pki.Issue(ca, caKey, pki.Request{CommonName: "dockerd", Hosts: []string{"127.0.0.1"}, Server: true}, now)
	cliCert, cliKey, _ := pki.Issue(ca, caKey, pki.Request{CommonName: "pgha", Client: true}, now)
	other, otherKey, _ := pki.NewCA("other", now)
	badCert, badKey, _ := pki.Issue(other, otherKey, pki.Request{CommonName: "pgha", Client: true}, now)
	wrongHost, wrongHostKey, _ := pki.Issue(ca, caKey, pki.Request{CommonName: "dockerd", Hosts: []string{"10.9.9.9"}, Server: true}, now)
	files := map[string]string{
		"ca": write("ca.pem", ca), "cert": write("cert.pem", cliCert), "key": write("key.pem", cliKey),
		"othercert": write("other-cert.pem", badCert), "otherkey": write("other-key.pem", badKey), "otherca": write("other-ca.pem", other),
	}

	ping := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		_, _ = w.Write([]byte("OK"))
	})
	serve := func(cert, key []byte) string {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		s := httptest.NewUnstartedServer(ping)
		s.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
		s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
		s.StartTLS()
		t.Cleanup(s.Close)
		return "tcp://" + s.Listener.Addr().String()
	}
	good := serve(srvCert, srvKey)
	misnamed := serve(wrongHost, wrongHostKey)
	plain := httptest.NewServer(ping)
	t.Cleanup(plain.Close)
	plainHost := "tcp://" + plain.Listener.Addr().String()

	cases := []struct {
		name           string
		host           string
		ca, cert, key  string
		want           string // "" = Ping succeeds
		newEngineFails bool
	}{
		{"trusted both ways", good, files["ca"], files["cert"], files["key"], "", false},
		{"client certificate of another CA", good, files["ca"], files["othercert"], files["otherkey"], "refused pgha's client certificate: cert_file and key_file", false},
		{"engine certificate of another CA", good, files["otherca"], files["cert"], files["key"], "presented a certificate that ca_file", false},
		{"engine certificate for another host", misnamed, files["ca"], files["cert"], files["key"], "presented a certificate for another host", false},
		{"engine without TLS", plainHost, files["ca"], files["cert"], files["key"], "does not speak TLS", false},
		{"no engine", "tcp://127.0.0.1:1", files["ca"], files["cert"], files["key"], "does not answer", false},
		{"key file missing", good, files["ca"], files["cert"], filepath.Join(dir, "missing-key.pem"), `runtime "docker" key_file: open: no such file`, true},
		{"key of another certificate", good, files["ca"], files["cert"], files["otherkey"], `cert_file and key_file are not a certificate and its key`, true},
		{"ca file not PEM", good, files["key"], files["cert"], files["key"], `ca_file holds no PEM certificate`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewEngine(Options{Host: tc.host, CAFile: tc.ca, CertFile: tc.cert, KeyFile: tc.key})
			if tc.newEngineFails {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("NewEngine: %v, want an error with %q", err, tc.want)
				}
				noPath(t, err, dir)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = e.Ping(ctx)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Ping: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.host) {
				t.Fatalf("Ping: %v\nwant an error naming %s and saying %q", err, tc.host, tc.want)
			}
			t.Log(err)
			noPath(t, err, dir)
		})
	}
}

// noPath: an error about the TLS files names attributes, not paths.
func noPath(t *testing.T, err error, dir string) {
	t.Helper()
	if strings.Contains(err.Error(), dir) || strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("the error shows a TLS file's path or content: %v", err)
	}
}
