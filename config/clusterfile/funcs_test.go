package clusterfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

func TestFunctions(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"plain": "s3cret", "lf": "s3cret\n", "crlf": "s3cret\r\n", "two": "s3cret\n\n", "cr": "s3cret\r", "empty": "",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("T_SET", "value")
	t.Setenv("T_EMPTY", "")
	unsetenv(t, "T_UNSET")
	str := cty.StringVal
	cases := []struct {
		fn      string
		args    []cty.Value
		want    string
		wantErr string // substring of the error; "" = no error
	}{
		{"env", []cty.Value{str("T_SET")}, "value", ""},
		{"env", []cty.Value{str("T_SET"), str("default")}, "value", ""},
		{"env", []cty.Value{str("T_EMPTY"), str("default")}, "", ""},
		{"env", []cty.Value{str("T_UNSET"), str("default")}, "default", ""},
		{"env", []cty.Value{str("T_UNSET"), str("")}, "", ""},
		{"env", []cty.Value{str("T_UNSET")}, "", "T_UNSET is not set. Export it"},
		{"env", []cty.Value{str("T_UNSET").Mark(Sensitive)}, "", "named by this (sensitive) expression"},
		{"env", []cty.Value{str("T_UNSET"), str("a"), str("b")}, "", "at most one default"},
		{"file", []cty.Value{str("plain")}, "s3cret", ""},
		{"file", []cty.Value{str("lf")}, "s3cret", ""},
		{"file", []cty.Value{str("crlf")}, "s3cret", ""},
		{"file", []cty.Value{str("two")}, "s3cret\n", ""},
		{"file", []cty.Value{str("cr")}, "s3cret\r", ""},
		{"file", []cty.Value{str("empty")}, "", ""},
		{"file", []cty.Value{str(filepath.Join(dir, "lf"))}, "s3cret", ""},
		{"file", []cty.Value{str("nope")}, "", "There is no file " + displayPath(filepath.Join(dir, "nope"))},
		{"file", []cty.Value{str("nope").Mark(Sensitive)}, "", "no file (a sensitive path)"},
		{"file", []cty.Value{str(".")}, "", "Check the path"},
	}
	fns := functions(dir)
	for _, tc := range cases {
		v, err := fns[tc.fn].Call(tc.args)
		label := tc.fn + "(" + strings.Trim(strings.Join(strings.Fields(fmtArgs(tc.args)), " "), " ") + ")"
		if tc.wantErr != "" {
			var fe *funcError
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &fe) {
				t.Errorf("%s: error %v, want one containing %q", label, err, tc.wantErr)
			}
			if err != nil && tc.args[0].IsMarked() && strings.Contains(err.Error(), "nope") {
				t.Errorf("%s: error quotes a sensitive argument: %v", label, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", label, err)
			continue
		}
		if !v.HasMark(Sensitive) {
			t.Errorf("%s: result not marked %q", label, Sensitive)
		}
		if got, _ := v.Unmark(); got.AsString() != tc.want {
			t.Errorf("%s = %q, want %q", label, got.AsString(), tc.want)
		}
	}
}

func fmtArgs(args []cty.Value) string {
	var parts []string
	for _, a := range args {
		v, _ := a.Unmark()
		parts = append(parts, `"`+v.AsString()+`"`)
	}
	return strings.Join(parts, ",")
}

// TestFunctionDiagnostics checks that a failed env() or file() is reported
// with its own summary at the range of the whole call.
func TestFunctionDiagnostics(t *testing.T) {
	unsetenv(t, "T_UNSET")
	src := `cluster "x" {
  primary = "db1"
  postgres { password = env("T_UNSET") }
  replication { password = file("no/such/file") }
  node "db1" { port = 5441 }
}`
	r := Parse([]byte(src), "f.hcl")
	if len(r.Diags) != 2 {
		t.Fatalf("want 2 diagnostics, got %v", r.Diags)
	}
	env, file := r.Diags[0], r.Diags[1]
	if env.Summary != "Environment variable not set" || !strings.Contains(env.Detail, "T_UNSET") ||
		env.Subject.Start.Column != 25 || env.Subject.End.Column != 39 {
		t.Errorf("env diagnostic: %s / %s at %v", env.Summary, env.Detail, env.Subject)
	}
	if file.Summary != "File not found" || !strings.Contains(file.Detail, filepath.Join("no", "such", "file")) ||
		file.Subject.Start.Column != 28 || file.Subject.End.Column != 48 {
		t.Errorf("file diagnostic: %s / %s at %v", file.Summary, file.Detail, file.Subject)
	}
}
