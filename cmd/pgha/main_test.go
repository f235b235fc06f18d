package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/reconcile"
	"github.com/pgha/pgha/report"
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

// TestShow renders a saved plan in the three views. The Markdown is the
// views golden byte for byte (the command adds nothing); the JSON is the
// saved plan again; a file that is not a pgha plan is refused with the
// reason.
func TestShow(t *testing.T) {
	const saved = "../../views/testdata/after_failover.tfplan"
	code, out, errs := runCLI(t, "show", "-markdown", saved)
	want, _ := os.ReadFile("../../views/testdata/after_failover.md")
	if code != exitOK || errs != "" || out != string(want) {
		t.Fatalf("show -markdown: exit %d, stderr %q\n%s", code, errs, out)
	}
	code, out, _ = runCLI(t, "show", "-json", saved)
	file, _ := os.ReadFile(saved)
	if code != exitOK || out != string(file) {
		t.Fatalf("show -json differs from the saved plan: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "show", saved)
	if code != exitOK || !strings.HasPrefix(out, "Warning: db2 is the writable primary") ||
		!strings.Contains(out, "  ~ standby.rejoin[db1]\n") || !strings.HasSuffix(out, "\nPlan: 2 to add, 5 to change, 0 to destroy.\n") {
		t.Fatalf("show: exit %d\n%s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "old.tfplan")
	os.WriteFile(bad, []byte(strings.Replace(string(file), `"format_version": "1.1"`, `"format_version": "0.9"`, 1)), 0o600)
	code, _, errs = runCLI(t, "show", "-markdown", bad)
	if code != exitError || !strings.Contains(errs, `format_version "0.9" is not supported by this pgha (wants 1.x)`) {
		t.Fatalf("show of an old plan: exit %d, %q", code, errs)
	}
	// A 1.0 plan (before params) is refused, with what to do; apply reads
	// saved plans through the same plan.ReadFile.
	os.WriteFile(bad, []byte(strings.Replace(string(file), `"format_version": "1.1"`, `"format_version": "1.0"`, 1)), 0o600)
	code, _, errs = runCLI(t, "show", bad)
	if code != exitError || !strings.Contains(errs, "format_version \"1.0\": this plan file was written by an older pgha, and its actions carry no params, which apply reads; run `pgha plan -out FILE` again") {
		t.Fatalf("show of a 1.0 plan: exit %d, %q", code, errs)
	}
	if code, _, errs := runCLI(t, "show", "-json", "-markdown", saved); code != exitError || !strings.Contains(errs, "Usage: pgha show [-json|-markdown] PLANFILE") {
		t.Fatalf("show -json -markdown: exit %d, %q", code, errs)
	}
}

// TestWatchLogLevel: -log-level takes info or debug; anything else is
// refused before the file is read, saying what it takes.
func TestWatchLogLevel(t *testing.T) {
	f := filepath.Join(t.TempDir(), "missing.hcl")
	code, _, errs := runCLI(t, "watch", "-once", "-log-level", "trace", "-f", f)
	if code != exitError || !strings.Contains(errs, "-log-level is info or debug, not \"trace\"") {
		t.Fatalf("watch -log-level trace: %d\n%s", code, errs)
	}
	// A valid level goes on to read the file (here missing: that error).
	code, _, errs = runCLI(t, "watch", "-once", "-log-level", "debug", "-f", f)
	if code != exitError || strings.Contains(errs, "-log-level") || !strings.Contains(errs, "missing.hcl") {
		t.Fatalf("watch -log-level debug with a missing file: %d\n%s", code, errs)
	}
}

// TestFailSaysWhyCancelled: "interrupted" only when the command's own
// context ended (Ctrl-C) and the error is that cancel; an apply whose
// lock was lost cancels its actions from inside, and its error is printed
// whole, with what was not attempted.
func TestFailSaysWhyCancelled(t *testing.T) {
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	running := context.Background()
	lost := &report.ApplyError{Failed: "node.start[db2]", NotAttempted: []string{"catalog.record[cluster]"},
		Err: fmt.Errorf("start db2: %w (%w)", context.Canceled, reconcile.ErrLockLost)}
	rewind := &report.ApplyError{Failed: "standby.rejoin[db1]",
		Err: errors.New("pg_rewind of db1 interrupted (interrupt signal received): its data directory stays where it was")}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"ctrl-c", stopped, fmt.Errorf("start db2: %w", context.Canceled), "Error: interrupted\n"},
		{"lock lost", running, lost, "the cluster lock was lost"},
		{"lock lost", running, lost, "not attempted: 1 (catalog.record[cluster])"},
		{"ctrl-c, the action said what it left", stopped, rewind, "its data directory stays where it was"},
		{"other", running, errors.New("boom"), "Error: boom\n"},
	} {
		var b strings.Builder
		if code := fail(tc.ctx, &b, tc.err); code != exitError {
			t.Errorf("%s: exit %d", tc.name, code)
		}
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("%s: printed %q, want %q in it", tc.name, b.String(), tc.want)
		}
	}
}
