package postgres

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
)

// TestSentinel: the sentinel connection stays quiet through a reload and
// a query on another session, and reports, within a moment, the death of
// its server's postmaster (kill -9), as a backend's FATAL or the closed
// connection.
func TestSentinel(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ep := endpoint(p)
	ep.Name = "db1"
	lost, closeConn, err := Sentinel(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	if err := Exec(ctx, ep, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		t.Fatalf("a reload ended the sentinel: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	b, err := os.ReadFile(filepath.Join(p.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		t.Logf("lost %s after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
		if !strings.Contains(err.Error(), "db1") {
			t.Errorf("the error does not name the node: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the sentinel did not notice the postmaster's death within 5 s")
	}
}
