package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgha/pgha/internal/pki"
	"github.com/pgha/pgha/internal/pki/certstore"
	"github.com/pgha/pgha/providers/redis"
)

func TestLocalTLS(t *testing.T) {
	t.Parallel()
	tlsScenario(t, "local")
}

func TestDockerTLS(t *testing.T) {
	t.Parallel()
	tlsScenario(t, "docker")
}

// tlsScenario: a new cluster comes up with TLS (no tls block: on by
// default); the primary's pg_stat_ssl shows TLS for the walsenders, with
// each standby's client certificate, and for pgha's own sessions; a
// standby whose certificate is not from the cluster CA cannot stream;
// the next apply installs the cluster's certificate again.
func tlsScenario(t *testing.T, rt string) {
	c := newCluster(t, rt, 3)
	ctx := context.Background()
	var r result
	if rt == "local" {
		// A plan saved before the CA existed: apply makes the CA first (the
		// catalog's TLS needs it before the lock), and the plan's own
		// certificate.issue[ca] then keeps it.
		planFile := filepath.Join(c.dir, "new.plan")
		if r := c.mustPgha("plan", "-out", planFile); !strings.Contains(r.stdout, "+ certificate.issue[ca]") {
			t.Fatalf("plan of a new cluster:\n%s", r)
		}
		r = c.mustPgha("apply", planFile)
		if !strings.Contains(r.stdout, "certificate.issue[ca]: done") || !strings.Contains(r.stdout, "already holds ca.crt; kept") {
			t.Fatalf("saved plan of a new cluster:\n%s", r)
		}
	} else {
		r = c.mustPgha("apply", "-auto-approve")
	}
	for _, want := range []string{"Created the cluster's certificate authority", "Issued the certificate of redis", "certificate.issue[db1]"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("apply of a new cluster did not run %s:\n%s", want, r)
		}
	}
	if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
		t.Fatalf("plan after apply:\n%s", r)
	}
	db1 := c.conn(ctx, "db1")

	t.Run("walsenders use TLS with the standbys' certificates", func(t *testing.T) {
		eventually(t, 30*time.Second, func() error {
			rows, err := db1.Query(ctx, `SELECT a.application_name, s.ssl, COALESCE(s.version, ''), COALESCE(s.client_dn, '')
  FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.backend_type = 'walsender' ORDER BY 1`)
			if err != nil {
				return err
			}
			var got []string
			for rows.Next() {
				var app, ver, dn string
				var ssl bool
				if err := rows.Scan(&app, &ssl, &ver, &dn); err != nil {
					return err
				}
				got = append(got, fmt.Sprintf("%s ssl=%v %s %s", app, ssl, ver, dn))
			}
			if err := rows.Err(); err != nil {
				return err
			}
			want := []string{"db2 ssl=true TLSv1.3 /O=pgha/CN=db2", "db3 ssl=true TLSv1.3 /O=pgha/CN=db3"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				return fmt.Errorf("walsenders %q, want %q", got, want)
			}
			return nil
		})
	})

	t.Run("pgha's sessions use TLS", func(t *testing.T) {
		// pgha's sessions are short: run plans until one is caught.
		pctx, cancel := context.WithCancel(ctx)
		planning := make(chan struct{})
		defer func() { cancel(); <-planning }() // no plan overlaps the next subtest
		go func() {
			defer close(planning)
			cc := c.with(t)
			for pctx.Err() == nil {
				// Plain Run: a goroutine must not call Fatal (the
				// output of plan is checked for secrets everywhere else).
				cmd := cc.command(pctx, "plan")
				_ = cmd.Run()
			}
		}()
		seen := map[string]int{}
		deadline := time.Now().Add(60 * time.Second)
		for seen["true"] < 3 && time.Now().Before(deadline) {
			rows, err := db1.Query(ctx, `SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
  WHERE a.application_name = 'pgha' AND a.pid <> pg_backend_pid()`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var ssl bool
				if err := rows.Scan(&ssl); err != nil {
					t.Fatal(err)
				}
				seen[fmt.Sprint(ssl)]++
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if seen["true"] < 3 || seen["false"] != 0 {
			t.Fatalf("pgha sessions seen by ssl: %v; want 3 or more with ssl and none without", seen)
		}
	})

	t.Run("replication needs a certificate from the cluster CA besides the password", func(t *testing.T) {
		repl := func(withCert bool) error {
			cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=replicator dbname=postgres replication=true sslmode=verify-full sslrootcert=%s",
				c.port("db1"), filepath.Join(c.dir, "data", "tls", "ca.crt")))
			if err != nil {
				return err
			}
			cfg.Password = replPW
			if withCert {
				cfg.TLSConfig = c.catalogTLS() // pgha's client certificate
			}
			conn, err := pgconn.ConnectConfig(ctx, cfg)
			if err != nil {
				return err
			}
			return conn.Close(ctx)
		}
		if err := repl(false); err == nil || !strings.Contains(err.Error(), "connection requires a valid client certificate") {
			t.Fatalf("replication with the password but no certificate: %v", err)
		}
		if err := repl(true); err != nil {
			t.Fatalf("replication with the password and pgha's certificate: %v", err)
		}
	})

	t.Run("the managed catalog speaks TLS only, to clients with a certificate", func(t *testing.T) {
		addr := fmt.Sprintf("127.0.0.1:%d", c.redis)
		cat := c.catalog()
		defer cat.Close()
		if err := cat.Ping(ctx); err != nil {
			t.Fatalf("pgha's TLS client: %v", err)
		}
		plain := redis.New(addr, c.catalogPassword(), 0, c.name)
		defer plain.Close()
		if err := plain.Ping(ctx); err == nil {
			t.Fatal("a plain-text client reached the catalog")
		}
		// TLS that trusts the CA but brings no certificate of its own.
		store := certstore.Store{Dir: filepath.Join(c.dir, "data", "tls")}
		noCert := redis.NewTLS(addr, c.catalogPassword(), 0, c.name, func() (*tls.Config, error) {
			cfg, err := store.ClientConfig("127.0.0.1")
			if err == nil {
				cfg.Certificates = nil
			}
			return cfg, err
		})
		defer noCert.Close()
		if err := noCert.Ping(ctx); err == nil {
			t.Fatal("a TLS client without a certificate reached the catalog")
		}
	})

	t.Run("a standby without a certificate from the cluster CA cannot stream", func(t *testing.T) {
		// A certificate and key for db3's names from another CA, in place
		// of db3's own; its walsender ended so that it connects again.
		rogueCA, rogueKey, err := pki.NewCA("rogue", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cert, key, err := pki.Issue(rogueCA, rogueKey, pki.Request{CommonName: "db3", Hosts: []string{"127.0.0.1", "localhost", c.container("db3")}, Server: true, Client: true}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(c.dir, "data", ".pgha", "tls", "db3")
		if rt == "docker" {
			dir = "/var/lib/pgha/tls"
		}
		c.sh("db3", fmt.Sprintf("umask 077; cat > %s/server.crt <<'EOF'\n%sEOF\ncat > %s/server.key <<'EOF'\n%sEOF\n", dir, cert, dir, key))
		logStart := len(c.nodeLog("db1"))
		if _, err := db1.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'db3'"); err != nil {
			t.Fatal(err)
		}
		// The primary refuses db3's certificate, every time db3 retries.
		eventually(t, 30*time.Second, func() error {
			log := c.nodeLog("db1")[logStart:]
			if n := strings.Count(log, "could not accept SSL connection: certificate verify failed"); n < 2 {
				return fmt.Errorf("%d refusals in db1's log since the swap:\n%s", n, log)
			}
			return nil
		})
		var streaming int
		if err := db1.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'db3'").Scan(&streaming); err != nil {
			t.Fatal(err)
		}
		if streaming != 0 {
			t.Fatalf("db3 streams with a certificate from another CA (%d walsenders)", streaming)
		}

		// pgha sees the foreign certificate and puts the cluster's back.
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || !strings.Contains(r.stdout, "certificate.install[db3]") || !strings.Contains(r.stdout, "db3 serves a certificate") {
			t.Fatalf("plan after the swap:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		eventually(t, 60*time.Second, func() error {
			var ssl bool
			err := db1.QueryRow(ctx, `SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)
  WHERE r.application_name = 'db3' AND r.state = 'streaming'`).Scan(&ssl)
			if err != nil || !ssl {
				return fmt.Errorf("db3 does not stream over TLS yet (ssl=%v, %v)", ssl, err)
			}
			return nil
		})
		eventually(t, 30*time.Second, func() error {
			if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
				return fmt.Errorf("plan after the repair:\n%s", r)
			}
			return nil
		})
	})
}

// nodeLog returns a node's server log.
func (c *cluster) nodeLog(node string) string {
	c.t.Helper()
	if c.rt == "docker" {
		out, err := exec.Command("docker", "exec", c.container(node), "cat", "/var/lib/pgha/log/postgresql.log").Output()
		if err != nil {
			c.t.Fatalf("read %s's log: %v", node, err)
		}
		return string(out)
	}
	b, err := os.ReadFile(filepath.Join(c.dir, "data", "log", node+".log"))
	if err != nil {
		c.t.Fatal(err)
	}
	return string(b)
}

// TestLocalTLSEnable and TestDockerTLSEnable turn TLS on for a cluster
// that ran without it (as clusters made before TLS did): one plan issues
// the certificates, installs them and reloads the servers with ssl and
// hostssl, re-points the standby with verify-full; the managed Redis is
// restarted with TLS; no server restarts, and the next plan has nothing
// to do.
func TestLocalTLSEnable(t *testing.T) {
	t.Parallel()
	tlsEnableScenario(t, "local")
}

func TestDockerTLSEnable(t *testing.T) {
	t.Parallel()
	tlsEnableScenario(t, "docker")
}

func tlsEnableScenario(t *testing.T, rt string) {
	c := newCluster(t, rt, 2)
	c.addBlock("  tls {\n    enabled = false\n  }\n")
	c.mustPgha("apply", "-auto-approve")
	ctx := context.Background()
	var started string
	if err := c.conn(ctx, "db1").QueryRow(ctx, "SELECT pg_postmaster_start_time()::text").Scan(&started); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	c.write(strings.Replace(string(src), "  tls {\n    enabled = false\n  }\n", "", 1))

	r := c.pgha("plan", "-detailed-exitcode")
	for _, want := range []string{"certificate.issue[ca]", "certificate.install[db1]", "certificate.install[db2]",
		"~ ssl           = \"off\" -> \"on\"", "pg_hba.conf   = \"2 TCP lines without TLS\" -> \"hostssl only\"", "apply by reload",
		"~ standby.follow[db2]", "sslmode=verify-full"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("the plan that turns TLS on lacks %q:\n%s", want, r)
		}
	}
	if r.code != 2 || strings.Contains(r.stdout, "restart") {
		t.Fatalf("the plan that turns TLS on (exit %d) restarts something:\n%s", r.code, r)
	}
	r = c.mustPgha("apply", "-auto-approve")
	if !strings.Contains(r.stdout, "Created the cluster's certificate authority") {
		t.Fatalf("apply:\n%s", r)
	}
	eventually(t, 30*time.Second, func() error {
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			return fmt.Errorf("plan after turning TLS on:\n%s", r)
		}
		return nil
	})
	db1 := c.conn(ctx, "db1") // verify-full now
	var again string
	var ssl bool
	if err := db1.QueryRow(ctx, "SELECT pg_postmaster_start_time()::text").Scan(&again); err != nil {
		t.Fatal(err)
	}
	if again != started {
		t.Fatalf("db1 restarted (%s, then %s): TLS is turned on by reload", started, again)
	}
	if err := db1.QueryRow(ctx, `SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.application_name = 'db2'`).Scan(&ssl); err != nil || !ssl {
		t.Fatalf("db2's walsender: ssl=%v, %v", ssl, err)
	}
	var conf []byte
	var want string
	if rt == "docker" {
		conf, err = exec.Command("docker", "exec", "pgha-"+c.name+"-redis", "cat", "/data/redis.conf").Output()
		want = "port 0\ntls-port 6379\n"
	} else {
		conf, err = os.ReadFile(filepath.Join(c.dir, "data", "redis", "redis.conf"))
		want = fmt.Sprintf("port 0\ntls-port %d\n", c.redis)
	}
	if err != nil || !strings.Contains(string(conf), want) {
		t.Fatalf("redis.conf after turning TLS on (%v):\n%s", err, conf)
	}
	cat := c.catalog()
	defer cat.Close()
	if err := cat.Ping(ctx); err != nil {
		t.Fatalf("the catalog over TLS: %v", err)
	}

	// pgha has seen both nodes serve TLS: the store records it, and from
	// now on a node that answers "no TLS" is refused, never reached in
	// plain text. Made here by hand (ssl = off in postgresql.auto.conf
	// and a reload); someone in between would look the same.
	store := certstore.Store{Dir: filepath.Join(c.dir, "data", "tls")}
	for _, n := range []string{"db1", "db2"} {
		if !store.Serving(n) {
			t.Fatalf("after turning TLS on the store does not record that %s serves TLS (%s)", n, store.ServingPath(n))
		}
	}
	c.sh("db2", `echo "ssl = off" >> "$D/postgresql.auto.conf" && pg_ctl -D "$D" reload >/dev/null`)
	eventually(t, 30*time.Second, func() error {
		r := c.pgha("plan")
		if !strings.Contains(r.String(), "db2 refused TLS although pgha has seen it serve TLS with the cluster's certificate: a server with ssl = off or someone in between; pgha will not fall back to plain text") {
			return fmt.Errorf("plan with db2 refusing TLS:\n%s", r)
		}
		return nil
	})
	c.sh("db2", `sed -i '/^ssl = off$/d' "$D/postgresql.auto.conf" && pg_ctl -D "$D" reload >/dev/null`)
	eventually(t, 30*time.Second, func() error {
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			return fmt.Errorf("plan after db2 serves TLS again:\n%s", r)
		}
		return nil
	})

	// And off again: ssl = off and host lines by reload, the standby
	// re-pointed, the catalog in plain text; nothing is left stuck.
	c.addBlock("  tls {\n    enabled = false\n  }\n")
	r = c.pgha("plan", "-detailed-exitcode")
	if r.code != 2 || !strings.Contains(r.stdout, "# db1: ssl differ from cluster.hcl; apply by reload") || !strings.Contains(r.stdout, "\"on\" -> \"off\"") ||
		!strings.Contains(r.stdout, "sslmode=prefer") {
		t.Fatalf("the plan that turns TLS off:\n%s", r)
	}
	c.mustPgha("apply", "-auto-approve")
	eventually(t, 30*time.Second, func() error {
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			return fmt.Errorf("plan after turning TLS off:\n%s", r)
		}
		return nil
	})
	for _, n := range []string{"db1", "db2"} {
		if store.Serving(n) {
			t.Fatalf("after turning TLS off the store still records that %s serves TLS", n)
		}
	}
	plainConn := c.connPort(ctx, c.port("db1"))
	eventually(t, 30*time.Second, func() error {
		var ssl bool
		err := plainConn.QueryRow(ctx, `SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.application_name = 'db2' AND r.state = 'streaming'`).Scan(&ssl)
		if err != nil || ssl {
			return fmt.Errorf("db2's walsender after TLS was turned off: ssl=%v, %v", ssl, err)
		}
		return nil
	})
}
