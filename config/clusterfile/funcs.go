package clusterfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Sensitive is the cty mark carried by values that come from env() and
// file(): they may be secrets, so nothing renders them by accident. The
// decoder removes it only when it stores a value in the model, and never
// quotes a marked value in a diagnostic.
const Sensitive = "sensitive"

// maxFileSize bounds file(): it reads secrets and small values, and a
// path such as /dev/zero must not hang pgha.
const maxFileSize = 1 << 20

// funcError is an error from env() or file() that already says what to do.
// The decoder turns it into a diagnostic of its own (instead of HCL's
// generic "Error in function call") whose range is the whole call.
type funcError struct{ summary, detail string }

func (e *funcError) Error() string { return e.detail }

// functions are the functions cluster.hcl may call. dir is the cluster
// file's directory, against which file() resolves relative paths.
//
// Arguments accept marked values so that a name or path that is itself
// sensitive (env(file("x"))) is used without being quoted in an error.
func functions(dir string) map[string]function.Function {
	return map[string]function.Function{
		"env": function.New(&function.Spec{
			Description: "The value of an environment variable, or the default when it is not set.",
			Params:      []function.Parameter{{Name: "name", Type: cty.String, AllowMarked: true}},
			VarParam:    &function.Parameter{Name: "default", Type: cty.String, AllowMarked: true},
			Type:        function.StaticReturnType(cty.String),
			Impl:        envImpl,
		}),
		"file": function.New(&function.Spec{
			Description: "The contents of a file, relative to the cluster file, without one trailing newline.",
			Params:      []function.Parameter{{Name: "path", Type: cty.String, AllowMarked: true}},
			Type:        function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				return fileImpl(dir, args[0])
			},
		}),
	}
}

func envImpl(args []cty.Value, _ cty.Type) (cty.Value, error) {
	if len(args) > 2 {
		return cty.NilVal, &funcError{"Too many arguments to env",
			`env takes a variable name and at most one default: env("NAME") or env("NAME", "default").`}
	}
	nameVal, marks := args[0].Unmark()
	name := nameVal.AsString()
	if v, ok := os.LookupEnv(name); ok {
		return cty.StringVal(v).WithMarks(marks).Mark(Sensitive), nil
	}
	if len(args) == 2 {
		return args[1].WithMarks(marks).Mark(Sensitive), nil
	}
	if len(marks) > 0 {
		return cty.NilVal, &funcError{"Environment variable not set",
			"The environment variable named by this (sensitive) expression is not set. Export it, or give a default as the second argument of env()."}
	}
	return cty.NilVal, &funcError{"Environment variable not set",
		fmt.Sprintf("The environment variable %s is not set. Export it (export %s=...), or give a default: env(%q, \"...\").", name, name, name)}
}

func fileImpl(dir string, arg cty.Value) (cty.Value, error) {
	pathVal, marks := arg.Unmark()
	p := pathVal.AsString()
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	shown := displayPath(p)
	if len(marks) > 0 {
		shown = "(a sensitive path)"
	}
	b, err := readSmallFile(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return cty.NilVal, &funcError{"File not found",
			fmt.Sprintf("There is no file %s (file() resolves relative paths against the cluster file's directory). Create it, or fix the path.", shown)}
	case err != nil && len(marks) > 0:
		return cty.NilVal, &funcError{"Cannot read file", fmt.Sprintf("Reading %s failed. Check the path and its permissions.", shown)}
	case err != nil:
		return cty.NilVal, &funcError{"Cannot read file", fmt.Sprintf("%v. Check the path and its permissions.", err)}
	}
	return cty.StringVal(trimNewline(string(b))).WithMarks(marks).Mark(Sensitive), nil
}

// displayPath shows a path relative to the working directory when it is
// below it, as the user would type it in the same shell, else absolute.
func displayPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && filepath.IsLocal(rel) {
		return rel
	}
	return p
}

// readSmallFile reads at most maxFileSize bytes and fails beyond that.
func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes, too large for a value in a cluster file", path, maxFileSize)
	}
	return b, nil
}

// trimNewline removes one trailing "\n" or "\r\n": editors and `echo` end
// files with a newline that is no part of the password.
func trimNewline(s string) string {
	if t, ok := strings.CutSuffix(s, "\r\n"); ok {
		return t
	}
	return strings.TrimSuffix(s, "\n")
}

// rewriteFuncDiags replaces HCL's generic "Error in function call" for our
// own functions with their summary and detail, and widens the subject from
// the function's name to the whole call so that the underline shows it.
func rewriteFuncDiags(diags hcl.Diagnostics) {
	for _, d := range diags {
		extra, ok := hcl.DiagnosticExtra[hclsyntax.FunctionCallDiagExtra](d)
		if !ok {
			continue
		}
		var fe *funcError
		if !errors.As(extra.FunctionCallError(), &fe) {
			continue
		}
		d.Summary, d.Detail = fe.summary, fe.detail
		if d.Context != nil {
			d.Subject = d.Context
		}
	}
}
