package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errw bytes.Buffer
	code := run(context.Background(), args, &out, &errw)
	return code, out.String(), errw.String()
}

const validFile = `cluster "x" {
primary = "db1"
  postgres {
 password = "p"
  }
  node "db1" {
    port = 5441
  }
  replication {
    password = "r"
  }
}
`

func TestFmt(t *testing.T) {
	f := filepath.Join(t.TempDir(), "cluster.hcl")
	os.WriteFile(f, []byte(validFile), 0o644)
	code, out, _ := runCLI(t, "fmt", "-check", "-diff", "-f", f)
	if code != exitFormat || !strings.Contains(out, "-primary = \"db1\"") || !strings.Contains(out, "+  primary = \"db1\"") {
		t.Fatalf("fmt -check -diff: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(f); string(b) != validFile {
		t.Fatal("fmt -check rewrote the file")
	}
	if code, _, _ := runCLI(t, "fmt", "-f", f); code != exitOK {
		t.Fatal("fmt failed")
	}
	if code, out, _ := runCLI(t, "fmt", "-check", f); code != exitOK || out != "" {
		t.Fatalf("formatted file still reported: %d %q", code, out)
	}
}

func TestValidate(t *testing.T) {
	f := filepath.Join(t.TempDir(), "cluster.hcl")
	os.WriteFile(f, []byte(validFile), 0o644)
	if code, out, _ := runCLI(t, "validate", "-f", f); code != exitOK || !strings.Contains(out, "Success!") {
		t.Fatalf("validate: %d %s", code, out)
	}
	os.WriteFile(f, []byte(strings.Replace(validFile, `"db1"`, `"db2"`, 1)), 0o644)
	code, _, errs := runCLI(t, "validate", "-f", f)
	if code != exitError || !strings.Contains(errs, f+":2:11") || !strings.Contains(errs, "Unknown primary") {
		t.Fatalf("validate of a bad file: %d\n%s", code, errs)
	}
	// A host that would write a trust line into pg_hba.conf stops every
	// command at the file, before anything is observed or touched.
	bad := strings.Replace(validFile, "  node \"db1\" {\n", "  node \"db1\" {\n    host = \"0.0.0.0/0 trust #\"\n", 1)
	if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"validate", "plan", "apply"} {
		code, out, errs := runCLI(t, cmd, "-f", f)
		if code != exitError || !strings.Contains(errs, f+":7:12") || !strings.Contains(errs, "Invalid host") || strings.Contains(out, "trust") {
			t.Fatalf("%s with host = \"0.0.0.0/0 trust #\": %d\n%s\n%s", cmd, code, out, errs)
		}
	}
}

func TestUsageAndVersion(t *testing.T) {
	if code, out, _ := runCLI(t, "version"); code != exitOK || !strings.HasPrefix(out, "pgha ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "frobnicate"); code != exitError || !strings.Contains(errs, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	if code, _, _ := runCLI(t, "plan", "-no-such-flag"); code != exitError {
		t.Fatal("bad flag accepted")
	}
}
