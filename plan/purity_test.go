package plan

import (
	"bytes"
	"fmt"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/pgha/pgha"

// purePackages are the packages of pgha that plan may depend on. plan is a
// function of the cluster file and the observation, and touches neither
// disk nor network apart from saved plan files (DESIGN.md), so each of
// these must be pure too. A new dependency of plan is added here after
// checking it is; one that does I/O belongs outside plan's imports (as
// config/clusterfile, which reads cluster.hcl, sits outside config).
var purePackages = []string{
	module + "/backup/policy",
	module + "/backup/walarchive",
	module + "/config",
	module + "/internal/bytesize",
	module + "/internal/pgconf",
	module + "/internal/pki",
	module + "/plan",
	module + "/state",
}

// ioAllowed are the files that may import an I/O package all the same,
// and which: plan's saved plan files are read and written there.
var ioAllowed = map[string][]string{"plan/saved.go": {"os"}}

// ioImport reports whether a package can reach the disk, the network,
// other processes or the environment. net/netip and net/url only parse.
func ioImport(path string) bool {
	switch path {
	case "os", "os/exec", "os/signal", "os/user", "io/ioutil", "syscall", "net", "plugin", "log/syslog":
		return true
	}
	if rest, ok := strings.CutPrefix(path, "net/"); ok {
		return rest != "netip" && rest != "url"
	}
	return path == module+"/providers" || strings.HasPrefix(path, module+"/providers/") ||
		strings.HasPrefix(path, "golang.org/x/sys/")
}

// TestPurity is issue 10's first acceptance point: `go list -deps ./plan`
// holds no package that touches disk or network besides saved plan files.
// It checks (a) that pgha's packages among plan's dependencies are
// exactly purePackages, and (b) that no file of theirs imports an I/O
// package (ioImport) unless ioAllowed says so. Imports are read file by
// file, so that an allowance for saved.go does not cover the rest of plan.
func TestPurity(t *testing.T) {
	pkgs, problems := purity(t, ".")
	var ours []string
	for _, p := range pkgs {
		if strings.HasPrefix(p, module+"/") {
			ours = append(ours, p)
		}
	}
	for _, p := range ours {
		if !slices.Contains(purePackages, p) {
			t.Errorf("plan now depends on %s, which is not in purePackages (plan/purity_test.go). plan must touch neither disk nor network: "+
				"if %s is pure, add it to purePackages; if it does I/O, keep it out of plan's imports.", p, p)
		}
	}
	for _, p := range purePackages {
		if !slices.Contains(ours, p) {
			t.Errorf("purePackages lists %s, which plan no longer depends on: remove it from plan/purity_test.go.", p)
		}
	}
	for _, p := range problems {
		t.Errorf("%s; plan must touch neither disk nor network (its dependencies included). Move the I/O out of plan's dependencies, "+
			"or use net/netip or strings for a pure use of net.", p)
	}
	if len(ours) == 0 {
		t.Fatal("go list found none of pgha's packages among plan's dependencies: the check proves nothing")
	}
}

// TestPurityCatches runs the same check on config/clusterfile, which reads
// cluster.hcl and so must be caught, to prove that TestPurity can fail.
func TestPurityCatches(t *testing.T) {
	_, problems := purity(t, "../config/clusterfile")
	want := module + "/config/clusterfile: config/clusterfile/parse.go imports os"
	if !slices.Contains(problems, want) {
		t.Fatalf("the check does not see clusterfile reading files; want %q among:\n%s", want, strings.Join(problems, "\n"))
	}
}

// purity lists the packages that pattern depends on (itself included) and
// every import of an I/O package by a file of pgha's among them, as
// "PACKAGE: FILE imports IMPORT" with FILE relative to the module root.
func purity(t *testing.T, pattern string) (pkgs, problems []string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the purity check runs `go list`, and go is not on PATH (%v): add /usr/local/go/bin to PATH", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{"\t"}}{{.Dir}}{{"\t"}}{{join .GoFiles " "}} {{join .CgoFiles " "}}`, pattern)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pattern, err, stderr.String())
	}
	fset := token.NewFileSet()
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		fields := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(fields) != 3 {
			t.Fatalf("go list printed %q, not PATH<tab>DIR<tab>FILES", line)
		}
		path, dir := fields[0], fields[1]
		pkgs = append(pkgs, path)
		rel, ours := strings.CutPrefix(path, module+"/")
		if !ours {
			continue
		}
		for _, name := range strings.Fields(fields[2]) {
			f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ImportsOnly)
			if err != nil {
				t.Fatalf("read the imports of %s: %v", name, err)
			}
			file := rel + "/" + name
			for _, spec := range f.Imports {
				imp, err := strconv.Unquote(spec.Path.Value)
				if err != nil {
					t.Fatalf("%s: import %s: %v", file, spec.Path.Value, err)
				}
				if ioImport(imp) && !slices.Contains(ioAllowed[file], imp) {
					problems = append(problems, fmt.Sprintf("%s: %s imports %s", path, file, imp))
				}
			}
		}
	}
	return pkgs, problems
}
