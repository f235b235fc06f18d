package backup

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestDirStore: objects appear whole or not at all, list sorted under a
// prefix (no partial files), delete is idempotent, and names cannot climb
// out of the repository.
func TestDirStore(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st := Dir(root)
	put := func(name, content string) error {
		return st.Put(ctx, name, func(w io.Writer) error { _, err := io.WriteString(w, content); return err })
	}
	if err := put("c/b1/manifest.json", "{}"); err != nil {
		t.Fatal(err)
	}
	if err := put("c/b2/base.tar", "data"); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("stream broke")
	if err := st.Put(ctx, "c/b3/base.tar", func(w io.Writer) error { io.WriteString(w, "half"); return boom }); !errors.Is(err, boom) {
		t.Fatalf("a failed fill: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "c/b3/base.tar")); !os.IsNotExist(err) {
		t.Fatalf("a failed object is visible (%v)", err)
	}
	names, err := st.List(ctx, "c")
	if err != nil || !slices.Equal(names, []string{"c/b1/manifest.json", "c/b2/base.tar"}) {
		t.Fatalf("list: %v (%v)", names, err)
	}
	r, err := st.Get(ctx, "c/b2/base.tar")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != "data" {
		t.Fatalf("get: %q", got)
	}
	if err := st.Delete(ctx, "c/b2/base.tar"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "c/b2/base.tar"); err != nil {
		t.Fatalf("a second delete: %v", err)
	}
	if names, _ := st.List(ctx, "nothing-here"); len(names) != 0 {
		t.Fatalf("list of a missing prefix: %v", names)
	}
	if err := put("../escape", "x"); err == nil {
		if _, serr := os.Stat(filepath.Join(filepath.Dir(root), "escape")); serr == nil {
			t.Fatal("a name climbed out of the repository")
		}
	}
}

// TestSameSecondIDs: two backups of one type in one second get two IDs
// and two places in the repository.
func TestSameSecondIDs(t *testing.T) {
	repo := t.TempDir()
	at := func() time.Time { return time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC) }
	o := Options{Repository: Dir(repo), Cluster: "c", Compression: "zstd", Now: at}
	var ids []string
	for range 3 {
		b, err := Logical(context.Background(), o, dumpString("SELECT 1;\n"), 1)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.ID)
	}
	if !slices.Equal(ids, []string{"20261127T010203Z-full", "20261127T010203Z-full-2", "20261127T010203Z-full-3"}) {
		t.Fatalf("ids: %v", ids)
	}
	list, err := Repository(Dir(repo), "c")
	if err != nil || len(list) != 3 {
		t.Fatalf("repository lists %d backups (%v)", len(list), err)
	}
}

type dumpString string

func (d dumpString) DumpAll(_ context.Context, w io.Writer) error {
	_, err := io.WriteString(w, string(d))
	return err
}
