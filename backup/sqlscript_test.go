package backup

import (
	"io"
	"strings"
	"testing"
)

func TestForFreshCluster(t *testing.T) {
	script := "--\n-- Roles\n--\n\nCREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER;\nCREATE ROLE replicator;\n" +
		"\\connect template1\nCREATE ROLE postgres;\nCOPY t (v) FROM stdin;\nCREATE ROLE postgres;\n\\.\n"
	want := "--\n-- Roles\n--\n\nALTER ROLE postgres WITH SUPERUSER;\nCREATE ROLE replicator;\n" +
		"\\connect template1\nCREATE ROLE postgres;\nCOPY t (v) FROM stdin;\nCREATE ROLE postgres;\n\\.\n"
	got, err := io.ReadAll(ForFreshCluster(strings.NewReader(script), "postgres"))
	if err != nil || string(got) != want {
		t.Fatalf("got %q (%v)\nwant %q", got, err, want)
	}
	// A quoted superuser, a last line without a newline, one byte at a time.
	script = "CREATE ROLE \"Admin\";\nALTER ROLE \"Admin\" WITH SUPERUSER;"
	var b strings.Builder
	r := ForFreshCluster(strings.NewReader(script), "Admin")
	p := make([]byte, 1)
	for {
		n, err := r.Read(p)
		b.Write(p[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if b.String() != "ALTER ROLE \"Admin\" WITH SUPERUSER;" {
		t.Fatalf("got %q", b.String())
	}
}
