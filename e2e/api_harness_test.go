package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
)

// apiToken is the e2e cluster's api token; noSecret checks it never
// shows in what pgha prints.
const apiToken = "e2e-Api-t0ken-s3cret"

// api is the API of a cluster's `pgha watch`: its base URL, each node's
// health port, and an HTTP client that trusts the cluster CA.
type api struct {
	c      *cluster
	base   string
	health map[string]int // node -> health_port
	client *http.Client
	tls    bool
}

// enableAPI adds to the cluster file an api block (on a free port, with
// the token read from a file, TLS as given) and a health_port per node.
// Call it before apply, so that the plan issues the API's certificate.
func (c *cluster) enableAPI(withTLS bool) *api {
	c.t.Helper()
	ports := testenv.FreePorts(c.t, len(c.names)+1)
	a := &api{c: c, base: fmt.Sprintf("127.0.0.1:%d", ports[0]), health: map[string]int{}, tls: withTLS}
	if err := os.WriteFile(filepath.Join(c.dir, "api-token"), []byte(apiToken+"\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	b, err := os.ReadFile(c.file)
	if err != nil {
		c.t.Fatal(err)
	}
	src := string(b)
	for i, n := range c.names {
		a.health[n] = ports[i+1]
		re := regexp.MustCompile(fmt.Sprintf(`(?s)(  node %q \{\n.*?)(  \}\n)`, n))
		if !re.MatchString(src) {
			c.t.Fatalf("no node %s block in %s", n, c.file)
		}
		src = re.ReplaceAllString(src, fmt.Sprintf("${1}    health_port = %d\n${2}", a.health[n]))
	}
	i := strings.LastIndex(src, "}")
	src = src[:i] + fmt.Sprintf("  api {\n    listen = %q\n    token  = file(\"./api-token\")\n    tls    = %v\n  }\n}\n", a.base, withTLS)
	c.write(src)
	a.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.caPool()}}}
	return a
}

// caPool trusts the cluster CA (once apply made it).
func (c *cluster) caPool() *x509.CertPool {
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(filepath.Join(c.dir, "data", "tls", "ca.crt")); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	return pool
}

func (a *api) scheme() string {
	if a.tls {
		return "https"
	}
	return "http"
}

// url is the API's URL of path.
func (a *api) url(path string) string { return a.scheme() + "://" + a.base + path }

// healthURL is node's health check path on its health_port.
func (a *api) healthURL(node, path string) string {
	return fmt.Sprintf("%s://127.0.0.1:%d%s", a.scheme(), a.health[node], path)
}

// refreshCA makes the client trust the CA apply created after enableAPI.
func (a *api) refreshCA() {
	a.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.c.caPool()}}
}

// do sends a request (with the token when auth) and returns the status
// code and body; the body must never hold a secret.
func (a *api) do(t *testing.T, method, url, body string, auth bool) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+apiToken)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a.c.noSecret(method+" "+url, string(b))
	return resp.StatusCode, b
}

// getJSON GETs path from the API into v.
func (a *api) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	code, b := a.do(t, "GET", a.url(path), "", false)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, b)
	}
}

// waitUp waits until the API answers GET / with an observation.
func (a *api) waitUp(t *testing.T, d time.Duration) {
	t.Helper()
	eventually(t, d, func() error {
		code, b := a.do(t, "GET", a.url("/"), "", false)
		if code != http.StatusOK {
			return fmt.Errorf("GET /: %d %s", code, b)
		}
		return nil
	})
}
