package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// docker runs the docker CLI for test plumbing (drift by hand).
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestDockerDrift covers what only containers can suffer: a removed
// container, a lost volume, an unlabelled lookalike, an image change.
func TestDockerDrift(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "docker", 2)
	ctx := context.Background()
	c.mustPgha("apply", "-auto-approve")
	p := c.conn(ctx, "db1")
	if _, err := p.Exec(ctx, "CREATE TABLE drift (id int primary key); INSERT INTO drift VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	readRow := func(t *testing.T, node string) {
		t.Helper()
		s := c.with(t).conn(ctx, node)
		eventually(t, 15*time.Second, func() error {
			var n int
			if err := s.QueryRow(ctx, "SELECT count(*) FROM drift WHERE id = 1").Scan(&n); err != nil {
				return err
			}
			if n != 1 {
				return fmt.Errorf("%s has %d rows with id 1, want 1", node, n)
			}
			return nil
		})
	}
	readRow(t, "db2")

	t.Run("container removed: recreated around its volume, no re-clone", func(t *testing.T) {
		c := c.with(t)
		// A marker inside the data directory would not survive a re-clone.
		docker(t, "exec", "-u", "postgres", c.container("db2"), "touch", "/var/lib/pgha/data/marker")
		docker(t, "rm", "-f", c.container("db2"))
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || !strings.Contains(r.stdout, "~ node.start[db2]") || strings.Contains(r.stdout, "standby.clone") {
			t.Fatalf("plan after docker rm:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		docker(t, "exec", "-u", "postgres", c.container("db2"), "test", "-f", "/var/lib/pgha/data/marker")
		readRow(t, "db2")
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged:\n%s", r)
		}
	})

	t.Run("volume lost: re-cloned", func(t *testing.T) {
		c := c.with(t)
		docker(t, "rm", "-f", c.container("db2"))
		docker(t, "volume", "rm", c.container("db2"))
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || !strings.Contains(r.stdout, "+ standby.clone[db2]") {
			t.Fatalf("plan after losing the volume:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		readRow(t, "db2")
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged:\n%s", r)
		}
	})

	t.Run("unlabelled lookalikes are left alone", func(t *testing.T) {
		c := c.with(t)
		// One with a name like pgha's, one in the way of a name pgha wants.
		look := c.container("db1") + "-lookalike"
		docker(t, "run", "-d", "--name", look, c.image, "sleep", "infinity")
		defer docker(t, "rm", "-f", look)
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("a lookalike changed the plan:\n%s", r)
		}
		docker(t, "rm", "-f", c.container("db2"))
		docker(t, "run", "-d", "--name", c.container("db2"), c.image, "sleep", "infinity")
		r := c.pgha("apply", "-auto-approve")
		if r.code == 0 || !strings.Contains(r.stderr, "is not pgha's") {
			t.Fatalf("apply took over an unlabelled container:\n%s", r)
		}
		if got := docker(t, "inspect", "-f", "{{.State.Running}} {{index .Config.Labels \"io.pgha.cluster\"}}", c.container("db2")); got != "true" {
			t.Fatalf("the unlabelled container was touched: %q", got)
		}
		docker(t, "rm", "-f", c.container("db2"))
		c.mustPgha("apply", "-auto-approve")
		if got := docker(t, "inspect", "-f", "{{.State.Running}}", look); got != "true" {
			t.Fatalf("the lookalike was touched: %q", got)
		}
	})

	t.Run("image change replaces containers and keeps data", func(t *testing.T) {
		c := c.with(t)
		retag := c.image + "-retag"
		docker(t, "tag", c.image, retag)
		defer exec.Command("docker", "rmi", retag).Run()
		good, _ := os.ReadFile(c.file)
		c.write(strings.ReplaceAll(string(good), `"`+c.image+`"`, `"`+retag+`"`))
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || !strings.Contains(r.stdout, "-/+ node.replace[db1]") || !strings.Contains(r.stdout, "-/+ node.replace[db2]") {
			t.Fatalf("plan after an image change:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		if got := docker(t, "inspect", "-f", "{{.Config.Image}}", c.container("db1")); got != retag {
			t.Fatalf("db1 runs %s", got)
		}
		readRow(t, "db1")
		readRow(t, "db2")
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged:\n%s", r)
		}
		// And back.
		c.write(string(good))
		c.mustPgha("apply", "-auto-approve")
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged after changing back:\n%s", r)
		}
	})

	t.Run("major version change is refused", func(t *testing.T) {
		c := c.with(t)
		// An image whose newest PostgreSQL claims to be 99.
		fake := c.image + "-fake99"
		tmp := docker(t, "create", c.image, "sh", "-c", `mkdir -p /usr/lib/postgresql/99/bin && cd /usr/lib/postgresql/99/bin &&
printf '#!/bin/sh\necho "postgres (PostgreSQL) 99.0"\n' > postgres && cp postgres pg_ctl && chmod +x postgres pg_ctl`)
		docker(t, "start", "-a", tmp)
		docker(t, "commit", tmp, fake)
		docker(t, "rm", tmp)
		defer exec.Command("docker", "rmi", fake).Run()
		good, _ := os.ReadFile(c.file)
		defer c.write(string(good))
		c.write(strings.ReplaceAll(string(good), `image       = "`+c.image+`"`, `image       = "`+fake+`"`))
		r := c.pgha("apply", "-auto-approve")
		if r.code == 0 || !strings.Contains(r.stderr, "major version upgrade needs pg_upgrade") {
			t.Fatalf("a major version change was not refused:\n%s", r)
		}
		readRow(t, "db1")
		c.write(string(good))
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("the refused change left drift:\n%s", r)
		}
	})

	t.Run("network removed: recreated", func(t *testing.T) {
		c := c.with(t)
		c.mustPgha("destroy", "-auto-approve")
		c.mustPgha("apply", "-auto-approve")
		for _, n := range []string{"db1", "db2", "redis"} {
			docker(t, "stop", c.container(n))
		}
		docker(t, "network", "rm", "pgha-"+c.name)
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || !strings.Contains(r.stdout, "network pgha-"+c.name+" is missing") {
			t.Fatalf("plan without the network:\n%s", r)
		}
		c.mustPgha("apply", "-auto-approve")
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged:\n%s", r)
		}
	})
}
