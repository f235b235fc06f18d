package views

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/pgha/pgha"

// allowedDeps are the packages of pgha that views may depend on: the data
// it renders (plan, state, report) and what those depend on. DESIGN.md
// puts views below reconcile: an API imports both, and a rendering must
// not pull in the engine, its providers or their drivers. A new dependency
// is added here only if it is such data; reconcile and providers never are
// (see forbidden).
var allowedDeps = []string{
	module + "/backup/policy",
	module + "/backup/walarchive",
	module + "/config",
	module + "/internal/bytesize",
	module + "/internal/pgconf",
	module + "/internal/pki",
	module + "/plan",
	module + "/report",
	module + "/state",
	module + "/views",
}

// forbidden reports why views must not depend on p, or "" if it may.
func forbidden(p string) string {
	switch {
	case p == module+"/reconcile" || strings.HasPrefix(p, module+"/reconcile/"):
		return "reconcile is the engine above views: move what views render into report"
	case p == module+"/providers" || strings.HasPrefix(p, module+"/providers/"):
		return "providers talk to PostgreSQL, Redis, Docker and processes; views only render data"
	}
	return ""
}

// TestLayering: `go list -deps ./views` holds, of pgha's packages, exactly
// allowedDeps, and so neither reconcile nor a provider.
func TestLayering(t *testing.T) {
	ours := pghaDeps(t, ".")
	for _, p := range ours {
		if why := forbidden(p); why != "" {
			t.Errorf("views depends on %s: %s", p, why)
		} else if !slices.Contains(allowedDeps, p) {
			t.Errorf("views now depends on %s, which is not in allowedDeps (views/layering_test.go): "+
				"add it if it is data views render (or what such data needs), else keep it out of views' imports", p)
		}
	}
	for _, p := range allowedDeps {
		if !slices.Contains(ours, p) {
			t.Errorf("allowedDeps lists %s, which views no longer depends on: remove it from views/layering_test.go", p)
		}
	}
}

// TestLayeringCatches runs the same check on cmd/pgha, which imports
// reconcile and the providers, to prove that TestLayering can fail.
func TestLayeringCatches(t *testing.T) {
	var caught []string
	for _, p := range pghaDeps(t, "../cmd/pgha") {
		if forbidden(p) != "" {
			caught = append(caught, p)
		}
	}
	for _, want := range []string{module + "/reconcile", module + "/providers/postgres"} {
		if !slices.Contains(caught, want) {
			t.Errorf("the check does not see cmd/pgha depend on %s; it caught only %v", want, caught)
		}
	}
}

// pghaDeps lists pgha's packages among those pattern depends on, itself
// included.
func pghaDeps(t *testing.T, pattern string) []string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the layering check runs `go list`, and go is not on PATH (%v): add /usr/local/go/bin to PATH", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("go", "list", "-deps", pattern)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pattern, err, stderr.String())
	}
	var ours []string
	for _, p := range strings.Fields(string(out)) {
		if p == module || strings.HasPrefix(p, module+"/") {
			ours = append(ours, p)
		}
	}
	if len(ours) == 0 {
		t.Fatalf("go list found none of pgha's packages among %s's dependencies: the check proves nothing", pattern)
	}
	return ours
}
