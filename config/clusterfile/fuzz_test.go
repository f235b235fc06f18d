package clusterfile

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, and that it gives
// either a cluster or errors with a place in the file, never both or none.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		files, _ := filepath.Glob(dir + "/*.hcl")
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		r := Parse(src, "fuzz.hcl")
		if (r.Cluster == nil) == !r.Diags.HasErrors() {
			t.Fatalf("cluster %v with diagnostics %v", r.Cluster != nil, r.Diags)
		}
		for _, d := range r.Diags {
			if d.Subject == nil {
				t.Fatalf("diagnostic without a range: %s: %s", d.Summary, d.Detail)
			}
		}
		diagText(t, r)
	})
}
