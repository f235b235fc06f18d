// Package clusterfile reads cluster.hcl into a config.Cluster: it parses
// the HCL, evaluates the functions the file may call (env, file), decodes
// every block against its schema, checks what holds across blocks and
// reports every problem at once as hcl.Diagnostics carrying file:line:col,
// printed with the source line underlined (Result.WriteDiagnostics).
//
// It is the one place a cluster file meets the disk and the environment
// (the file itself, env(), file(), the managed catalog's generated
// password, whether pgha runs as root); config holds the model it fills.
package clusterfile

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/pgha/pgha/config"
)

// Result is what loading a cluster file gives: the cluster when it is
// valid, the diagnostics, and the parsed files so that diagnostics can be
// printed with their source lines.
type Result struct {
	Cluster *config.Cluster // nil when Diags has errors
	Diags   hcl.Diagnostics
	Files   map[string]*hcl.File
}

// Load reads and decodes a cluster file. A file that cannot be read is a
// diagnostic too, so that callers have one way to report every problem.
func Load(path string) *Result {
	src, err := os.ReadFile(path)
	if err != nil {
		d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read the cluster file",
			Detail: fmt.Sprintf("%v. Check the path and its permissions.", err)}
		if errors.Is(err, os.ErrNotExist) {
			d.Summary = "No cluster file"
			d.Detail = fmt.Sprintf("There is no file %s. Run pgha in the directory that holds cluster.hcl, "+
				"or pass the cluster file with -f FILE (README.md shows a complete one).", path)
		}
		return &Result{Files: map[string]*hcl.File{}, Diags: hcl.Diagnostics{d}}
	}
	return Parse(src, path)
}

// Parse decodes cluster file source. filename appears in diagnostics as
// given (so that they read as the user typed it) and, made absolute, is
// the base against which relative paths in the file resolve.
//
// Every problem found is reported, not only the first: decoding goes on
// past a bad attribute, and the checks across blocks run on whatever
// decoded.
func Parse(src []byte, filename string) *Result {
	p := hclparse.NewParser()
	f, diags := p.ParseHCL(src, filename)
	r := &Result{Files: p.Files(), Diags: diags}
	if diags.HasErrors() {
		return r
	}
	abs, err := filepath.Abs(filename)
	if err != nil {
		abs = filename
	}
	d := newDecoder(filepath.Dir(abs))
	c := d.file(f.Body)
	if c != nil {
		sum := sha256.Sum256(src)
		c.File, c.Dir, c.Hash = abs, d.dir, "sha256:"+hex.EncodeToString(sum[:])
		d.validate(c)
	}
	sortDiags(d.diags)
	r.Diags = append(r.Diags, d.diags...)
	if c != nil && !r.Diags.HasErrors() {
		r.Cluster = c
	}
	return r
}

// Format returns src in canonical HCL formatting.
func Format(src []byte) []byte { return hclwrite.Format(src) }

// sortDiags orders diagnostics by position in the file, so that they read
// top to bottom whichever pass found them.
func sortDiags(diags hcl.Diagnostics) {
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		switch {
		case a.Subject == nil && b.Subject == nil:
			return 0
		case a.Subject == nil:
			return -1
		case b.Subject == nil:
			return 1
		}
		return cmp.Or(cmp.Compare(a.Subject.Filename, b.Subject.Filename), cmp.Compare(a.Subject.Start.Byte, b.Subject.Start.Byte))
	})
}

// pos formats a range's start as file:line:col.
func pos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}
