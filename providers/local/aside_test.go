package local_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/providers/local"
)

// Moving aside renames the data directory beside itself, leaves an empty
// one for the clone, and only RemoveAside deletes, and only what is named
// as set aside from that data directory.
func TestMoveAsideAndRemove(t *testing.T) {
	r := newRuntime(t)
	root := testenv.Dir(t)
	dir := filepath.Join(root, "db1")
	if err := r.CreateDataDir(dir); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"PG_VERSION": "15\n", "marker": strings.Repeat("x", 5000)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	aside, err := r.MoveAside(dir, "20261201T010203Z")
	if err != nil {
		t.Fatal(err)
	}
	if aside != dir+".aside-20261201T010203Z" {
		t.Fatalf("aside = %q", aside)
	}
	if b, err := os.ReadFile(filepath.Join(aside, "marker")); err != nil || len(b) != 5000 {
		t.Fatalf("the marker did not move with the data: %d bytes, %v", len(b), err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("the new data directory is not empty: %v %v", ents, err)
	}
	if _, err := r.MoveAside(dir, "20261201T010203Z"); err != nil {
		t.Fatalf("an empty directory has nothing to set aside, got %v", err)
	}
	got := local.FindAside(dir)
	if len(got) != 1 || got[0].Path != aside || got[0].Bytes != 5003 {
		t.Fatalf("FindAside = %+v, want %s with 5003 bytes", got, aside)
	}
	// Names that are not set-aside directories of dir are refused.
	other := filepath.Join(root, "db10.aside-x")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{other, dir, root, dir + ".aside-../db1", dir + ".aside-"} {
		if err := r.RemoveAside(dir, p, "t"); err == nil || !strings.Contains(err.Error(), "not a set-aside data directory") {
			t.Errorf("RemoveAside(%s) = %v", p, err)
		}
	}
	link := dir + ".aside-link"
	if err := os.Symlink(aside, link); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveAside(dir, link, "t"); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("RemoveAside(symlink) = %v", err)
	}
	// Only a directory carrying pgha's marker for the cluster goes.
	if err := r.RemoveAside(dir, aside, "t"); err == nil || !strings.Contains(err.Error(), "carries no pgha.marker") {
		t.Fatalf("RemoveAside without pgha's marker = %v", err)
	}
	if err := r.WriteMarker(aside, local.Marker{Cluster: "t", Node: "db1"}); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveAside(dir, aside, "other"); err == nil || !strings.Contains(err.Error(), `belongs to cluster "t"`) {
		t.Fatalf("RemoveAside for another cluster = %v", err)
	}
	if err := r.RemoveAside(dir, aside, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(aside); !os.IsNotExist(err) {
		t.Fatalf("%s still exists: %v", aside, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("another node's directory went too: %v", err)
	}
}
