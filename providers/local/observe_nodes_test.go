package local_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/providers/local"
	"github.com/pgha/pgha/state"
)

// TestObserveNodesUndeclared: a data directory under data_dir that no
// declared node owns is listed (foreign when pgha did not make it for this
// cluster), set-aside directories and directories without PG_VERSION are
// not, and pg is asked about none that does not run.
func TestObserveNodesUndeclared(t *testing.T) {
	r := newRuntime(t)
	root := testenv.Dir(t)
	mk := func(name string, marker string) string {
		dir := filepath.Join(root, name)
		if err := r.CreateDataDir(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if marker != "" {
			if err := r.WriteMarker(dir, local.Marker{Cluster: marker, Node: name}); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	mk("db1", "demo")
	mk("db3", "demo")                                                   // removed from cluster.hcl
	mk("stray", "")                                                     // someone else's
	mk("db1.aside-20260101T000000Z", "demo")                            // set aside, not a node
	if err := os.Mkdir(filepath.Join(root, "log"), 0o755); err != nil { // no PG_VERSION
		t.Fatal(err)
	}
	declared := []*state.Node{{Name: "db1", DataDir: filepath.Join(root, "db1")}, {Name: "db2", DataDir: filepath.Join(root, "db2")}}
	asked := 0
	obs := r.ObserveNodes(declared, root, "demo", func(*state.Node) { asked++ })
	if asked != 0 {
		t.Errorf("pg was called %d times for servers that do not run", asked)
	}
	got := map[string]*state.Node{}
	for _, n := range obs.Undeclared {
		got[n.Name] = n
	}
	if len(got) != 2 || got["db3"] == nil || got["stray"] == nil {
		t.Fatalf("undeclared: %v; want db3 and stray", got)
	}
	if got["db3"].DataForeign != "" || !strings.Contains(got["stray"].DataForeign, "carries no") {
		t.Errorf("foreign: db3 %q (pgha's), stray %q (not)", got["db3"].DataForeign, got["stray"].DataForeign)
	}
	if db1 := declared[0]; !db1.Initialized || db1.DataForeign != "" || len(db1.Aside) != 1 || !db1.Aside[0].Owned || db1.Error != "not running" {
		t.Errorf("db1: %+v", db1)
	}
	if db2 := declared[1]; db2.DirExists || db2.DataForeign != "" {
		t.Errorf("db2 (no directory): %+v", db2)
	}
}
