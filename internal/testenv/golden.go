package testenv

import (
	"bytes"
	"os"
	"testing"
)

// Golden compares got with the golden file at path, or rewrites the file
// when update is set (each package's -update flag). The failure says how
// to refresh it, after reading the difference.
func Golden(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (check it, then run go test with -update):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
