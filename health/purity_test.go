package health

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/pgha/pgha"

// allowed are the only packages of pgha's that health may import: it is a
// function of observations, as plan is, and both are pure (plan's
// purity_test.go checks config's and state's dependencies).
var allowed = []string{module + "/config", module + "/state"}

// TestPurity: health imports none of pgha's packages but config and
// state, and no package of the standard library that reaches the disk,
// the network, other processes or the environment.
func TestPurity(t *testing.T) {
	imports := importsOf(t, ".")
	if !slices.Contains(imports, "time") {
		t.Fatalf("go list shows none of health's imports (%v): the check proves nothing", imports)
	}
	for _, p := range problems(imports) {
		t.Error(p)
	}
}

// TestPurityCatches proves the check can fail: config/clusterfile reads
// cluster.hcl.
func TestPurityCatches(t *testing.T) {
	if !slices.Contains(problems(importsOf(t, "../config/clusterfile")), "imports os, which does I/O") {
		t.Fatal("the check does not see config/clusterfile import os")
	}
}

func problems(imports []string) []string {
	var out []string
	for _, imp := range imports {
		switch {
		case strings.HasPrefix(imp, module+"/") && !slices.Contains(allowed, imp):
			out = append(out, "imports "+imp+": health may import only config and state")
		case imp == "os" || strings.HasPrefix(imp, "os/") || imp == "syscall" || imp == "io/ioutil" || imp == "plugin" ||
			imp == "net" || (strings.HasPrefix(imp, "net/") && imp != "net/netip" && imp != "net/url"):
			out = append(out, "imports "+imp+", which does I/O")
		}
	}
	return out
}

// importsOf lists the imports of a package's non-test files.
func importsOf(t *testing.T, pattern string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, pattern).Output()
	if err != nil {
		t.Fatalf("go list %s: %v (the check needs go on PATH)", pattern, err)
	}
	return strings.Fields(string(out))
}
