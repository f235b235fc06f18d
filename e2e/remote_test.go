package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/report"
)

// TestDockerRemoteEngine runs a three-node cluster on a Docker engine
// reached over TCP with mutual TLS, as an engine on another host is:
// runtime "docker" { host = "tcp://127.0.0.2:PORT", ca_file, cert_file,
// key_file }. The engine is this machine's, served on 127.0.0.2 with TLS
// that requires a client certificate of its own CA (testenv.StartDockerTLS
// says why a relay rather than a second dockerd);
// the node ports are published on 127.0.0.2, the engine's address, and
// pgha must dial them there (nothing listens on 127.0.0.1 for them).
//
// It applies, checks convergence and where the nodes are reached, switches
// over, and then presents a client certificate of another CA: plan,
// apply and status must say which engine refused it and what to fix, and
// no TLS key path or content may appear in any output.
func TestDockerRemoteEngine(t *testing.T) {
	t.Parallel()
	eng := testenv.StartDockerTLS(t, "127.0.0.2") // before newCluster: its teardown (destroy) still goes through it
	c := newCluster(t, "docker", 3)
	ctx := context.Background()

	src, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	network := fmt.Sprintf("    network     = \"pgha-%s\"\n", c.name)
	engine := func(certFile, keyFile string) string {
		return network + fmt.Sprintf("    host        = %q\n    ca_file     = %q\n    cert_file   = %q\n    key_file    = %q\n",
			eng.Host, eng.CAFile, certFile, keyFile)
	}
	good := strings.Replace(string(src), network, engine(eng.CertFile, eng.KeyFile), 1)
	good = strings.Replace(good, fmt.Sprintf("address = \"127.0.0.1:%d\"", c.redis), fmt.Sprintf("address = \"127.0.0.2:%d\"", c.redis), 1)
	if !strings.Contains(good, eng.Host) || !strings.Contains(good, "127.0.0.2:") {
		t.Fatalf("the cluster file was not rewritten for the remote engine:\n%s", good)
	}
	c.write(good)

	keyPEM, err := os.ReadFile(eng.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	// A line of the key's base64 body: found in an output, the key leaked.
	keyLine := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")[1]
	noTLSKey := func(what, out string) {
		t.Helper()
		for _, s := range []string{eng.KeyFile, keyLine, "PRIVATE KEY"} {
			if strings.Contains(out, s) {
				t.Fatalf("%s shows the engine client key's path or content (%q):\n%s", what, s, out)
			}
		}
	}

	// No changes, within a minute: observation gives each node 2 s, which
	// a loaded two-core machine sometimes misses right after a start.
	planConverged := func(c *cluster, what string) {
		t := c.t
		t.Helper()
		tries := 0
		eventually(t, time.Minute, func() error {
			tries++
			if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
				return fmt.Errorf("not converged %s (try %d):\n%s", what, tries, r)
			}
			return nil
		})
		if tries > 1 {
			t.Logf("converged %s at the plan's %d-th try", what, tries)
		}
	}

	r := c.pgha("plan", "-detailed-exitcode")
	if r.code != 2 || !strings.Contains(r.stdout, "127.0.0.2:") {
		t.Fatalf("first plan:\n%s", r)
	}
	noTLSKey("plan", r.String())
	r = c.pgha("plan", "-json")
	if r.code != 0 {
		t.Fatalf("plan -json:\n%s", r)
	}
	noTLSKey("plan -json", r.String())

	start := time.Now()
	noTLSKey("apply", c.mustPgha("apply", "-auto-approve").String())
	t.Logf("apply of 3 nodes and the catalog through the TLS engine: %s", time.Since(start).Round(time.Second))
	planConverged(c, "after apply")

	// The ports are published on the engine's address, 127.0.0.2, and
	// the nodes are reached there.
	for _, n := range c.names {
		want := fmt.Sprintf("127.0.0.2:%d", c.port(n))
		if got := docker(t, "port", c.container(n), "5432/tcp"); got != want {
			t.Fatalf("%s is published on %q, want %s", n, got, want)
		}
	}
	status := func(t *testing.T) report.Status {
		t.Helper()
		r := c.mustPgha("status", "-json")
		noTLSKey("status -json", r.String())
		var st report.Status
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status -json: %v\n%s", err, r.stdout)
		}
		return st
	}
	converged := func(t *testing.T, primary string) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			st := status(t)
			if st.RuntimeError != "" {
				return fmt.Errorf("runtime error: %s", st.RuntimeError)
			}
			for _, n := range st.Nodes {
				switch {
				case n.Host != "127.0.0.2":
					return fmt.Errorf("%s is reached at %s:%d, want 127.0.0.2", n.Name, n.Host, n.Port)
				case n.Name == primary && n.Role != "primary":
					return fmt.Errorf("%s is %s, want primary", n.Name, n.Role)
				case n.Name != primary && (n.Role != "standby" || !n.Streaming):
					return fmt.Errorf("%s is %s (streaming %t), want a streaming standby", n.Name, n.Role, n.Streaming)
				}
			}
			return nil
		})
	}
	converged(t, "db1")

	connect := func(t *testing.T, node string) *pgx.Conn {
		t.Helper()
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.2 port=%d user=postgres dbname=postgres sslmode=verify-full sslrootcert=%s",
			c.port(node), filepath.Join(c.dir, "data", "tls", "ca.crt")))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Password = superPW
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("connect to %s at 127.0.0.2: %v", node, err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	db1 := connect(t, "db1")
	if _, err := db1.Exec(ctx, "CREATE TABLE remote (id int primary key); INSERT INTO remote VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	t.Run("switchover through the remote engine", func(t *testing.T) {
		c := c.with(t)
		c.write(strings.Replace(good, `primary = "db1"`, `primary = "db2"`, 1))
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || !strings.Contains(r.stdout, "switchover") {
			t.Fatalf("plan after primary = db2:\n%s", r)
		}
		start := time.Now()
		noTLSKey("apply (switchover)", c.mustPgha("apply", "-auto-approve").String())
		t.Logf("switchover through the TLS engine: %s", time.Since(start).Round(time.Second))
		planConverged(c, "after the switchover")
		converged(t, "db2")
		db2 := connect(t, "db2")
		if _, err := db2.Exec(ctx, "INSERT INTO remote VALUES (2)"); err != nil {
			t.Fatalf("write on the new primary: %v", err)
		}
		var n int
		if err := db2.QueryRow(ctx, "SELECT count(*) FROM remote").Scan(&n); err != nil || n != 2 {
			t.Fatalf("db2 holds %d rows (%v), want 2: the row written on db1 before the switchover and one after", n, err)
		}
	})
	if eng.Handshakes() == 0 {
		t.Fatal("no client completed a TLS handshake with the engine: pgha did not go through tcp:// with TLS")
	}

	t.Run("a client certificate of another CA is refused, saying what to fix", func(t *testing.T) {
		c := c.with(t)
		cur, _ := os.ReadFile(c.file)
		defer c.write(string(cur))
		certFile, keyFile := testenv.ForeignClient(t, filepath.Join(t.TempDir(), "foreign"))
		c.write(strings.Replace(string(cur), engine(eng.CertFile, eng.KeyFile), engine(certFile, keyFile), 1))
		refusedBefore := eng.Refused()
		foreignKey, _ := os.ReadFile(keyFile)
		leaks := []string{keyFile, strings.Split(string(foreignKey), "\n")[1]}
		says := func(what, out string) {
			t.Helper()
			for _, want := range []string{eng.Host, "refused pgha's client certificate", "cert_file and key_file"} {
				if !strings.Contains(out, want) {
					t.Fatalf("%s does not say %q:\n%s", what, want, out)
				}
			}
			for _, s := range leaks {
				if strings.Contains(out, s) {
					t.Fatalf("%s shows the client key's path or content:\n%s", what, out)
				}
			}
			noTLSKey(what, out)
		}
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 4 {
			t.Fatalf("plan with a foreign client certificate: want exit 4 (critical):\n%s", r)
		}
		says("plan", r.stdout)
		if strings.Contains(r.stdout, "node.create") || strings.Contains(r.stdout, "Plan:") {
			t.Fatalf("plan proposes changes it cannot know it needs:\n%s", r)
		}
		r = c.pgha("plan", "-json")
		says("plan -json", r.stdout)
		r = c.pgha("apply", "-auto-approve")
		if r.code == 0 {
			t.Fatalf("apply with a foreign client certificate succeeded:\n%s", r)
		}
		says("apply", r.stderr)
		r = c.pgha("status", "-json")
		says("status -json", r.stdout)
		if eng.Refused() == refusedBefore {
			t.Fatal("the engine refused no handshake: the foreign certificate never reached it")
		}
	})

	// Back with the right certificate, nothing moved.
	planConverged(c, "after the refused certificate")
}
