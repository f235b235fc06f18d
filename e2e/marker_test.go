package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLocalDestroyLeavesForeignData: data pgha did not make survives
// `pgha destroy`. A PostgreSQL directory without pgha's marker in a node's
// place stays, and the plan says why, while pgha's own directories go; a
// Redis directory whose redis.conf is another's stops destroy before
// anything (pgha will not start its catalog there, let alone delete it).
func TestLocalDestroyLeavesForeignData(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "local", 2)
	c.mustPgha("apply", "-auto-approve")
	// db2's directory is replaced by someone else's cluster (no marker);
	// the catalog's by someone else's Redis.
	c.pgctl("db2", "-m", "fast", "stop")
	foreign := c.dataDir("db2")
	if err := os.RemoveAll(foreign); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(foreign, "base"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"PG_VERSION": "15\n", "postgresql.conf": "port = 5432\n", "base/precious": "rows"} {
		if err := os.WriteFile(filepath.Join(foreign, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	redisDir := filepath.Join(c.dir, "data", "redis")
	r := c.pgha("destroy", "-auto-approve")
	if r.code != 0 || !strings.Contains(r.stdout, "destroy leaves the data directory of db2: pgha did not make it") ||
		strings.Contains(r.stdout, "node.destroy[db2]") || !strings.Contains(r.stdout, "node.destroy[db1]") {
		t.Fatalf("destroy with a foreign db2:\n%s", r)
	}
	if b, err := os.ReadFile(filepath.Join(foreign, "base", "precious")); err != nil || string(b) != "rows" {
		t.Fatalf("the foreign data directory was touched: %q %v", b, err)
	}
	if _, err := os.Stat(c.dataDir("db1")); !os.IsNotExist(err) {
		t.Fatalf("pgha's own data directory is still there: %v", err)
	}
	if _, err := os.Stat(redisDir); !os.IsNotExist(err) {
		t.Fatalf("pgha's own catalog directory is still there: %v", err)
	}

	// A Redis directory that is not pgha's stays too.
	if err := os.MkdirAll(redisDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"redis.conf": "port 6379\n", "dump.rdb": "data"} {
		if err := os.WriteFile(filepath.Join(redisDir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// destroy needs the catalog for its lock and will not start a Redis
	// over another's directory: it stops, saying why, and touches nothing.
	r = c.pgha("destroy", "-auto-approve")
	if r.code == 0 || !strings.Contains(r.stderr, redisDir+" holds no redis.conf written by pgha") || strings.Contains(r.stdout, "catalog.destroy") {
		t.Fatalf("destroy with a foreign catalog directory:\n%s", r)
	}
	if b, err := os.ReadFile(filepath.Join(redisDir, "redis.conf")); err != nil || string(b) != "port 6379\n" {
		t.Fatalf("the foreign redis.conf was rewritten: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(redisDir, "dump.rdb")); err != nil || string(b) != "data" {
		t.Fatalf("the foreign catalog directory was touched: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(foreign, "base", "precious")); err != nil || string(b) != "rows" {
		t.Fatalf("the foreign data directory was touched by the second destroy: %q %v", b, err)
	}
}
