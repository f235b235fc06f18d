package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/tools/txtar"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/config/clusterfile"
	"github.com/pgha/pgha/state"
)

// A plan case is one file, testdata/cases/NAME.txtar, as Caddy's adapt
// tests keep input and expected output together: a reader sees the
// cluster, what was observed and the plan side by side, and a new case is
// a new file, not Go code. The txtar comment says what the case shows;
// its sections are
//
//	cluster.hcl    the declared cluster, parsed by the config loader
//	observed.json  the observation (state.Cluster as JSON; its
//	               observed_at is the planner's clock)
//	options.json   optional: the operation and its options (caseOptions)
//	plan.txt       the expected text plan (plan.Text)
//	plan.json      the expected JSON plan (plan.JSON)
//
// `go test ./plan -run TestCases -update` rewrites plan.txt and plan.json
// from what the planner gives; read the diff before committing it.
const casesDir = "testdata/cases"

var update = flag.Bool("update", false, "rewrite the expected plans of the case files")

// caseFile is where every case's cluster.hcl is parsed as if it lived:
// the plans name it (Remove prevent_destroy ... in /srv/pgha/cluster.hcl)
// and relative paths resolve against its directory, so they read the
// same on every machine. The secrets come from env() (caseSecrets); the
// one file the loader may look for there, a managed catalog's generated
// password (/srv/pgha/.secrets/catalog), must be absent, and loadCase
// says so if a machine has one.
const caseFile = "/srv/pgha/cluster.hcl"

// caseSecrets are the environment variables the cases' cluster.hcl read
// their passwords from, with values no plan may print.
var caseSecrets = map[string]string{
	"PGHA_SUPERUSER_PASSWORD":   "su-secret-1",
	"PGHA_REPLICATION_PASSWORD": "repl-secret-2",
}

// caseOptions is options.json: which builder makes the plan and with what
// options, as the CLI flags would give them.
type caseOptions struct {
	// Operation is "apply" (the default: BuildWith), "failover"
	// (BuildFailover) or "destroy" (BuildDestroy).
	Operation     string `json:"operation"`
	NoSwitchover  bool   `json:"no_switchover,omitempty"`  // apply: pgha failback -no-switchover
	DeleteRemoved bool   `json:"delete_removed,omitempty"` // apply: -delete-removed
	To            string `json:"to,omitempty"`             // failover: -to NODE
	Force         bool   `json:"force,omitempty"`          // failover: -force
	DeleteVolumes bool   `json:"delete_volumes,omitempty"` // destroy: -delete-volumes
}

// goldenCase is one loaded case file.
type goldenCase struct {
	name    string
	path    string
	archive *txtar.Archive
	cluster *config.Cluster
	state   *state.Cluster
	opts    caseOptions
}

// section returns the named file of the archive, and whether it is there.
func (pc *goldenCase) section(name string) ([]byte, bool) {
	for _, f := range pc.archive.Files {
		if f.Name == name {
			return f.Data, true
		}
	}
	return nil, false
}

// setSection replaces (or appends) a file of the archive.
func (pc *goldenCase) setSection(name string, data []byte) {
	for i := range pc.archive.Files {
		if pc.archive.Files[i].Name == name {
			pc.archive.Files[i].Data = data
			return
		}
	}
	pc.archive.Files = append(pc.archive.Files, txtar.File{Name: name, Data: data})
}

// setCaseSecrets sets the variables the cases' env() calls read.
func setCaseSecrets(t *testing.T) {
	t.Helper()
	for k, v := range caseSecrets {
		t.Setenv(k, v)
	}
}

// caseFiles lists the case files; there must be some, or a wrong working
// directory would pass every test.
func caseFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(casesDir, "*.txtar"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no plan cases in %s (%v)", casesDir, err)
	}
	return files
}

// loadCase reads and decodes one case file. The caller has set the
// secrets (setCaseSecrets).
func loadCase(t *testing.T, path string) *goldenCase {
	t.Helper()
	a, err := txtar.ParseFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	pc := &goldenCase{name: strings.TrimSuffix(filepath.Base(path), ".txtar"), path: path, archive: a}
	raw := txtar.Format(a)
	for name, secret := range caseSecrets {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("%s holds the value of %s: cluster.hcl reads passwords with env(), and neither the observation nor a plan may hold one", path, name)
		}
	}
	known := map[string]bool{"cluster.hcl": true, "observed.json": true, "options.json": true, "plan.txt": true, "plan.json": true}
	seen := map[string]bool{}
	for _, f := range a.Files {
		if !known[f.Name] || seen[f.Name] {
			t.Fatalf("%s: unknown or repeated section %q (want cluster.hcl, observed.json, options.json, plan.txt, plan.json)", path, f.Name)
		}
		seen[f.Name] = true
	}
	if len(bytes.TrimSpace(a.Comment)) == 0 {
		t.Errorf("%s: no comment saying what the case shows", path)
	}
	src, ok := pc.section("cluster.hcl")
	if !ok {
		t.Fatalf("%s: no cluster.hcl section", path)
	}
	r := clusterfile.Parse(src, caseFile)
	if r.Diags.HasErrors() || r.Cluster == nil {
		t.Fatalf("%s: cluster.hcl does not load:\n%s", path, r.Diags.Error())
	}
	pc.cluster = r.Cluster
	if cat := pc.cluster.Catalog; cat != nil && cat.PasswordFile != "" && cat.Password.IsSet() {
		t.Fatalf("%s: the loader read a generated catalog password from %s on this machine; the cases are planned as if it had none (move it away to run them)", path, cat.PasswordFile)
	}
	obs, ok := pc.section("observed.json")
	if !ok {
		t.Fatalf("%s: no observed.json section", path)
	}
	pc.state = &state.Cluster{}
	if err := decodeStrict(obs, pc.state); err != nil {
		t.Fatalf("%s: observed.json: %v", path, err)
	}
	if b, ok := pc.section("options.json"); ok {
		if err := decodeStrict(b, &pc.opts); err != nil {
			t.Fatalf("%s: options.json: %v", path, err)
		}
	}
	return pc
}

// decodeStrict decodes one JSON document, refusing fields the type does
// not have (a misspelt fact would otherwise be silently zero) and
// anything after the document.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the document")
	}
	return nil
}

// build makes the case's plan with the builder options.json names.
func (pc *goldenCase) build() (*Plan, error) {
	switch o := pc.opts; o.Operation {
	case "", "apply":
		return BuildWith(pc.cluster, pc.state, Options{NoSwitchover: o.NoSwitchover, DeleteRemoved: o.DeleteRemoved}), nil
	case "failover":
		return BuildFailover(pc.cluster, pc.state, FailoverOptions{To: o.To, Force: o.Force})
	case "destroy":
		return BuildDestroy(pc.cluster, pc.state, DestroyOptions{DeleteVolumes: o.DeleteVolumes})
	default:
		return nil, fmt.Errorf("unknown operation %q (apply, failover or destroy)", o.Operation)
	}
}

// buildCase builds the plan of the case file testdata/cases/NAME.txtar,
// for tests that assert something of one case beyond its golden. The
// caller has set the secrets (setCaseSecrets).
func buildCase(t *testing.T, name string) *Plan {
	t.Helper()
	path := filepath.Join(casesDir, name+".txtar")
	p, err := loadCase(t, path).build()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return p
}

// namedPlan is the plan of one case file.
type namedPlan struct {
	name string
	plan *Plan
}

// casePlans builds the plan of every case, in file order, for the tests
// that check a property of all plans (params, saved-plan round trip).
func casePlans(t *testing.T) []namedPlan {
	t.Helper()
	setCaseSecrets(t)
	var plans []namedPlan
	for _, f := range caseFiles(t) {
		name := strings.TrimSuffix(filepath.Base(f), ".txtar")
		plans = append(plans, namedPlan{name, buildCase(t, name)})
	}
	return plans
}

// TestCases builds the plan of every case file and compares its text and
// JSON renderings with the expected sections.
func TestCases(t *testing.T) {
	setCaseSecrets(t)
	for _, path := range caseFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			pc := loadCase(t, path)
			p, err := pc.build()
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			checkDependencies(t, p)
			var text bytes.Buffer
			Text(&text, p)
			js, err := JSON(p)
			if err != nil {
				t.Fatal(err)
			}
			js = append(js, '\n') // txtar sections end with a newline
			for _, out := range [][]byte{text.Bytes(), js} {
				for name, secret := range caseSecrets {
					if bytes.Contains(out, []byte(secret)) {
						t.Fatalf("%s: the plan prints the value of %s", path, name)
					}
				}
			}
			got := map[string][]byte{"plan.txt": text.Bytes(), "plan.json": js}
			if *update {
				for _, name := range []string{"plan.txt", "plan.json"} {
					pc.setSection(name, got[name])
				}
				if err := os.WriteFile(path, txtar.Format(pc.archive), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, name := range []string{"plan.txt", "plan.json"} {
				want, ok := pc.section(name)
				if !ok {
					t.Errorf("%s: no %s section (run go test ./plan -run TestCases -update to add it)", path, name)
					continue
				}
				if d := cmp.Diff(string(want), string(got[name])); d != "" {
					t.Errorf("%s: %s differs (-want +got):\n%s\nCheck the change, then run go test ./plan -run TestCases -update.", path, name, d)
				}
			}
		})
	}
}
