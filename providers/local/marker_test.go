package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/internal/pgconf"
	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/providers/local"
)

// TestRemoveOnlyMarked: pgha deletes a data directory only when it carries
// pgha's marker for the same cluster, or is one an older pgha made
// (PG_VERSION beside a pgha.conf with pgha's header), or is empty; and a
// Redis directory only when its redis.conf is pgha's.
func TestRemoveOnlyMarked(t *testing.T) {
	r := newRuntime(t)
	root := testenv.Dir(t)
	write := func(dir, name, content string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	marker := func(cluster string) string {
		return pgconf.Header + "cluster = " + cluster + "\nnode = db1\n"
	}
	for _, tc := range []struct {
		name  string
		setup func(dir string)
		err   string // "" = removed
	}{
		{"empty", func(dir string) { os.Mkdir(dir, 0o700) }, ""},
		{"marked", func(dir string) { write(dir, "PG_VERSION", "15\n"); write(dir, local.MarkerFile, marker("demo")) }, ""},
		{"made by an older pgha", func(dir string) {
			write(dir, "PG_VERSION", "15\n")
			write(dir, "pgha.conf", pgconf.Header+"port = '5441'\n")
		}, ""},
		{"another cluster's", func(dir string) { write(dir, "PG_VERSION", "15\n"); write(dir, local.MarkerFile, marker("prod")) },
			`belongs to cluster "prod" (see pgha.marker), not "demo"`},
		{"a cluster pgha did not make", func(dir string) { write(dir, "PG_VERSION", "15\n"); write(dir, "postgresql.conf", "port = 5432\n") },
			"carries no pgha.marker and no pgha.conf written by pgha"},
		{"pgha.conf without pgha's header", func(dir string) { write(dir, "PG_VERSION", "15\n"); write(dir, "pgha.conf", "port = 1\n") },
			"carries no pgha.marker"},
		{"someone's files", func(dir string) { write(dir, "notes.txt", "mine") }, "carries no pgha.marker"},
		{"marker without a cluster", func(dir string) { write(dir, local.MarkerFile, pgconf.Header) }, "names no cluster"},
		{"marker is a symlink", func(dir string) {
			write(dir, "PG_VERSION", "15\n")
			write(root, "elsewhere", marker("demo"))
			if err := os.Symlink(filepath.Join(root, "elsewhere"), filepath.Join(dir, local.MarkerFile)); err != nil {
				t.Fatal(err)
			}
		}, "is not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(root, strings.ReplaceAll(tc.name, " ", "_"))
			tc.setup(dir)
			err := r.RemoveDataDir(dir, "demo")
			_, statErr := os.Lstat(dir)
			if tc.err == "" {
				if err != nil || !os.IsNotExist(statErr) {
					t.Fatalf("not removed: %v (stat: %v)", err, statErr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
			if statErr != nil {
				t.Fatalf("removed anyway: %v", statErr)
			}
		})
	}
	if err := r.RemoveDataDir(filepath.Join(root, "missing"), "demo"); err != nil {
		t.Fatalf("a missing directory: %v", err)
	}

	redisDir := filepath.Join(root, "redis")
	write(redisDir, "redis.conf", "bind 127.0.0.1\n")
	write(redisDir, "appendonly.aof", "data")
	if err := r.RemoveRedisDir(redisDir); err == nil || !strings.Contains(err.Error(), "no redis.conf written by pgha") {
		t.Fatalf("RemoveRedisDir of a foreign redis dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(redisDir, "appendonly.aof")); err != nil {
		t.Fatalf("foreign redis data removed: %v", err)
	}
	other := filepath.Join(root, "redis-other")
	write(other, "dump.rdb", "data")
	if err := r.RemoveRedisDir(other); err == nil || !strings.Contains(err.Error(), "has dump.rdb") {
		t.Fatalf("RemoveRedisDir of a directory with another Redis's data: %v", err)
	}
	if err := r.StartRedis(context.Background(), local.RedisOptions{Addr: "127.0.0.1:1", Dir: other}); err == nil || !strings.Contains(err.Error(), "will neither use nor delete it") {
		t.Fatalf("StartRedis in another Redis's directory: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(other, "dump.rdb")); err != nil || string(b) != "data" {
		t.Fatalf("another Redis's data touched: %q %v", b, err)
	}
	if err := r.StartRedis(context.Background(), local.RedisOptions{Addr: "127.0.0.1:1", Dir: redisDir}); err == nil || !strings.Contains(err.Error(), "its redis.conf is another's") {
		t.Fatalf("StartRedis over another redis.conf: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(redisDir, "redis.conf")); err != nil || string(b) != "bind 127.0.0.1\n" {
		t.Fatalf("another redis.conf rewritten: %q %v", b, err)
	}
	halfMade := filepath.Join(root, "redis-half")
	write(filepath.Join(halfMade, "tls"), "ca.crt", "pem")
	if err := r.RemoveRedisDir(halfMade); err != nil {
		t.Fatalf("a directory pgha had only begun (tls/): %v", err)
	}
	write(redisDir, "redis.conf", pgconf.Header+"bind \"127.0.0.1\"\n")
	if err := r.RemoveRedisDir(redisDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(redisDir); !os.IsNotExist(err) {
		t.Fatalf("pgha's redis dir not removed: %v", err)
	}
}
