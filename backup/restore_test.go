package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pgha/pgha/backup/policy"
	"github.com/pgha/pgha/state"
)

type entry struct {
	name, link string
	typ        byte
	body       string
}

func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o600, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// tree lists every path under root with its kind, for exact comparisons.
func tree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		kind := "f"
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			kind = "l"
		case fi.IsDir():
			kind = "d"
		}
		out = append(out, kind+" "+rel)
		return nil
	})
	sort.Strings(out)
	return out
}

func TestExtract(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	err := Extract(bytes.NewReader(tarOf(t,
		entry{name: "./", typ: tar.TypeDir},
		entry{name: "PG_VERSION", typ: tar.TypeReg, body: "17\n"},
		entry{name: "base/1/", typ: tar.TypeDir},
		entry{name: "base/1/112", typ: tar.TypeReg, body: "x"},
		entry{name: "global/pg_control", typ: tar.TypeReg, body: "c"},
		entry{name: "fifo", typ: tar.TypeFifo},
	)), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"d .", "d base", "d base/1", "d global", "f PG_VERSION", "f base/1/112", "f global/pg_control"}
	if got := tree(t, dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("extracted:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "PG_VERSION")); string(b) != "17\n" {
		t.Fatalf("PG_VERSION = %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "PG_VERSION")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
}

// TestExtractRefuses: names that climb out, links, a target that is a
// symlink or holds data, and a symlink planted inside the target.
func TestExtractRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
		setup   func(t *testing.T, dir, outside string)
		err     string
	}{
		{"dot-dot", []entry{{name: "../escape", typ: tar.TypeReg, body: "x"}}, nil, "leaves the target directory"},
		{"dot-dot inside", []entry{{name: "base/../../escape", typ: tar.TypeReg, body: "x"}}, nil, "leaves the target directory"},
		{"absolute", []entry{{name: "/etc/escape", typ: tar.TypeReg, body: "x"}}, nil, "leaves the target directory"},
		{"symlink entry", []entry{{name: "pg_tblspc/1", link: "/etc", typ: tar.TypeSymlink}}, nil, "is a link"},
		{"hard link entry", []entry{{name: "x", link: "/etc/passwd", typ: tar.TypeLink}}, nil, "is a link"},
		{"target is a symlink", []entry{{name: "PG_VERSION", typ: tar.TypeReg, body: "17"}}, func(t *testing.T, dir, outside string) {
			if err := os.Symlink(outside, dir); err != nil {
				t.Fatal(err)
			}
		}, "not a directory"},
		{"target holds data", []entry{{name: "PG_VERSION", typ: tar.TypeReg, body: "17"}}, func(t *testing.T, dir, outside string) {
			os.Mkdir(dir, 0o700)
			os.WriteFile(filepath.Join(dir, "mine"), nil, 0o600)
		}, "not empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir, outside := filepath.Join(root, "data"), filepath.Join(root, "outside")
			os.Mkdir(outside, 0o700)
			if tc.setup != nil {
				tc.setup(t, dir, outside)
			}
			before := tree(t, root)
			err := Extract(bytes.NewReader(tarOf(t, tc.entries...)), dir)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
			if got := tree(t, outside); len(got) != 1 {
				t.Fatalf("written outside the target: %v", got)
			}
			for _, p := range tree(t, root) {
				if strings.Contains(p, "escape") {
					t.Fatalf("escaped: %s (before: %v)", p, before)
				}
			}
		})
	}

	// A symlink already inside the target (pg_wal pointing elsewhere) is
	// not followed by a later extraction into that directory.
	root := t.TempDir()
	dir, outside := filepath.Join(root, "data"), filepath.Join(root, "outside")
	os.MkdirAll(dir, 0o700)
	os.Mkdir(outside, 0o700)
	if err := os.Symlink(outside, filepath.Join(dir, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	seg := "pg_wal/000000010000000000000003"
	err := extractWAL(bytes.NewReader(tarOf(t, entry{name: seg, typ: tar.TypeReg, body: "wal"})), dir)
	if err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Fatalf("extractWAL through a symlinked pg_wal: %v", err)
	}
	if got := tree(t, outside); len(got) != 1 {
		t.Fatalf("written through the symlink: %v", got)
	}
	// ... nor a symlink in place of the file itself.
	os.Remove(filepath.Join(dir, "pg_wal"))
	os.Mkdir(filepath.Join(dir, "pg_wal"), 0o700)
	if err := os.Symlink(filepath.Join(outside, "victim"), filepath.Join(dir, seg)); err != nil {
		t.Fatal(err)
	}
	err = extractWAL(bytes.NewReader(tarOf(t, entry{name: seg, typ: tar.TypeReg, body: "wal"})), dir)
	if err == nil {
		t.Fatal("extractWAL wrote through a symlinked segment")
	}
	if _, err := os.Lstat(filepath.Join(outside, "victim")); err == nil {
		t.Fatal("the symlink's target was created")
	}
}

// TestRestoreChainParts: a block-level chain is extracted into a fresh
// directory that MkdirTemp makes and then removes; sibling DIR.partN
// directories that existed before, and a symlink among them, are neither
// written into nor removed.
func TestRestoreChainParts(t *testing.T) {
	repo, root := t.TempDir(), t.TempDir()
	dir := filepath.Join(root, "data")
	outside := filepath.Join(root, "outside")
	os.Mkdir(outside, 0o700)
	os.WriteFile(filepath.Join(outside, "keep"), []byte("k"), 0o600)
	os.Mkdir(dir+".part0", 0o700)
	os.WriteFile(filepath.Join(dir+".part0", "mine"), []byte("m"), 0o600)
	if err := os.Symlink(outside, dir+".part1"); err != nil {
		t.Fatal(err)
	}
	var chain []state.Backup
	for i, format := range []string{policy.FormatBase, policy.FormatIncremental} {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(tarOf(t, entry{name: "PG_VERSION", typ: tar.TypeReg, body: "17\n"}, entry{name: "n", typ: tar.TypeReg, body: string(rune('a' + i))}))
		zw.Close()
		p := "demo/b" + string(rune('0'+i)) + ".tar.gz"
		os.MkdirAll(filepath.Join(repo, "demo"), 0o700)
		if err := os.WriteFile(filepath.Join(repo, p), gz.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(gz.Bytes())
		chain = append(chain, state.Backup{ID: "b" + string(rune('0'+i)), Format: format, Compression: "gzip", Path: p,
			Checksum: "sha256:" + hex.EncodeToString(sum[:])})
	}
	var seen []string
	combine := func(parts []string, out string) error {
		for _, p := range parts {
			if !strings.HasPrefix(p, filepath.Join(root, ".data.parts-")) {
				t.Errorf("part %s is not in a fresh directory", p)
			}
			b, err := os.ReadFile(filepath.Join(p, "n"))
			if err != nil {
				return err
			}
			seen = append(seen, string(b))
		}
		return os.Mkdir(out, 0o700)
	}
	if _, err := RestoreChain(Dir(repo), chain, dir, nil, combine); err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "a,b" {
		t.Fatalf("combine saw %v", seen)
	}
	want := []string{"d .", "d data", "d data.part0", "d outside", "f data.part0/mine", "f outside/keep", "l data.part1"}
	if got := tree(t, root); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after the restore:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
