package backup

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract: whatever the archive — names with .., absolute names,
// links, raw bytes that are barely a tar — Extract writes nothing outside
// its target directory and creates no symlink inside it.
func FuzzExtract(f *testing.F) {
	f.Add([]byte(nil), "PG_VERSION", byte(tar.TypeReg), "", "base/1/", byte(tar.TypeDir), []byte("17\n"))
	f.Add([]byte(nil), "../escape", byte(tar.TypeReg), "", "x/../../y", byte(tar.TypeReg), []byte("x"))
	f.Add([]byte(nil), "pg_wal", byte(tar.TypeSymlink), "../outside", "pg_wal/x", byte(tar.TypeReg), []byte("x"))
	f.Add([]byte(nil), "/abs", byte(tar.TypeReg), "", "a", byte(tar.TypeLink), []byte(nil))
	f.Add(tarOf(f, entry{name: "./a/b", typ: tar.TypeReg, body: "x"}), "", byte(0), "", "", byte(0), []byte(nil))
	f.Fuzz(func(t *testing.T, raw []byte, name1 string, typ1 byte, link1 string, name2 string, typ2 byte, body []byte) {
		stream := raw
		if len(stream) == 0 {
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			for _, e := range []struct {
				name, link string
				typ        byte
			}{{name1, link1, typ1}, {name2, "", typ2}} {
				h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o600, Format: tar.FormatPAX}
				if e.typ == tar.TypeReg {
					h.Size = int64(len(body))
				}
				if tw.WriteHeader(h) != nil {
					return
				}
				if e.typ == tar.TypeReg {
					tw.Write(body)
				}
			}
			if tw.Close() != nil {
				return
			}
			stream = b.Bytes()
		}
		root := t.TempDir()
		dir, outside := filepath.Join(root, "data"), filepath.Join(root, "outside")
		if err := os.Mkdir(outside, 0o700); err != nil {
			t.Fatal(err)
		}
		_ = Extract(bytes.NewReader(stream), dir) // an error is fine; an escape is not
		for _, p := range tree(t, root) {
			rel := p[2:]
			if rel == "." || rel == "outside" || rel == "data" {
				if p[0] == 'l' {
					t.Fatalf("%s became a symlink", rel)
				}
				continue
			}
			if !strings.HasPrefix(rel, "data/") {
				t.Fatalf("written outside the target: %s", p)
			}
			if p[0] == 'l' {
				t.Fatalf("a symlink was created: %s", p)
			}
		}
	})
}
