package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// dump renders a decoded cluster machine-independently.
func dump(t *testing.T, c *Cluster) []byte {
	t.Helper()
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(bytes.ReplaceAll(b, []byte(c.Dir), []byte("<dir>")), '\n')
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./config -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (check, then go test ./config -update):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

const (
	superSecret = "Super-From-Env-s3cret"
	replSecret  = "Repl-From-File-s3cret"
	redisSecret = "Redis-From-Env-s3cret"
)

func setSecrets(t *testing.T) {
	t.Setenv("T_SUPER", superSecret)
	t.Setenv("T_REDIS", redisSecret)
	t.Setenv("PGHA_SUPERUSER_PASSWORD", superSecret)
	t.Setenv("PGHA_REPLICATION_PASSWORD", replSecret)
	os.Unsetenv("T_PORT")
	os.Unsetenv("PGHA_TEST_SURELY_UNSET")
}

func TestGoodFiles(t *testing.T) {
	setSecrets(t)
	files, _ := filepath.Glob("testdata/good/*.hcl")
	if len(files) < 2 {
		t.Fatal("no good files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := Load(f)
			if r.Diags.HasErrors() {
				var b bytes.Buffer
				r.WriteDiagnostics(&b)
				t.Fatalf("diagnostics:\n%s", b.String())
			}
			got := dump(t, r.Cluster)
			for _, s := range []string{superSecret, replSecret, redisSecret} {
				if strings.Contains(string(got), s) {
					t.Fatal("dump leaks a secret")
				}
			}
			golden(t, strings.TrimSuffix(f, ".hcl")+".golden", got)
		})
	}
}

func TestThreeNodeModel(t *testing.T) {
	setSecrets(t)
	r := Load("testdata/good/three_node.hcl")
	c := r.Cluster
	if c == nil {
		t.Fatalf("%v", r.Diags)
	}
	if c.Postgres.Password.Reveal() != superSecret || c.Replication.Password.Reveal() != replSecret || c.Catalog.Password.Reveal() != redisSecret {
		t.Fatal("secrets not decoded from env() and file()")
	}
	if c.Node("db2").Port != 5442 || c.Node("db2").Slot != "replication_slot" || !c.Node("db3").PreventDestroy {
		t.Fatalf("nodes: %+v %+v", c.Node("db2"), c.Node("db3"))
	}
	if got := c.Postgres.Parameters; got["max_wal_senders"] != "10" || got["hot_standby"] != "on" || got["random_page_cost"] != "1.1" {
		t.Fatalf("parameters: %v", got)
	}
	if !filepath.IsAbs(c.Runtime.DataDir) || filepath.Base(c.Runtime.DataDir) != "pgdata" || c.Node("db1").DataDir != filepath.Join(c.Runtime.DataDir, "db1") {
		t.Fatalf("data dir not resolved against the file: %s", c.Runtime.DataDir)
	}
	if c.Failover.MaximumLag != 32<<20 || c.Failover.CheckInterval.Milliseconds() != 500 {
		t.Fatalf("failover: %+v", c.Failover)
	}
	for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", *c), fmt.Sprintf("%#v", c.Postgres), fmt.Sprint(c.Replication.Password)} {
		if strings.Contains(s, superSecret) || strings.Contains(s, replSecret) {
			t.Fatalf("formatting leaks a secret: %s", s)
		}
	}
	t.Setenv("T_PORT", "6000")
	if c := Load("testdata/good/three_node.hcl").Cluster; c == nil || c.Node("db2").Port != 6000 {
		t.Fatal("env() with a set variable not used for port")
	}
}

func TestBadFiles(t *testing.T) {
	setSecrets(t)
	files, _ := filepath.Glob("testdata/bad/*.hcl")
	if len(files) < 12 {
		t.Fatalf("only %d bad files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := Load(f)
			if !r.Diags.HasErrors() || r.Cluster != nil {
				t.Fatal("no error for a bad file")
			}
			var b bytes.Buffer
			if err := r.WriteDiagnostics(&b); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if !strings.Contains(out, "--> "+f+":") {
				t.Errorf("no file:line:col in:\n%s", out)
			}
			golden(t, strings.TrimSuffix(f, ".hcl")+".golden", b.Bytes())
		})
	}
}

func TestMissingFile(t *testing.T) {
	r := Load("testdata/nope.hcl")
	if !r.Diags.HasErrors() || !strings.Contains(r.Diags.Error(), "-f FILE") {
		t.Fatalf("missing file: %v", r.Diags)
	}
}

func TestSecretsNeverInDiagnostics(t *testing.T) {
	setSecrets(t)
	// A secret used where a number is expected must not be echoed.
	src := `cluster "x" {
  primary = "db1"
  postgres {
    password = env("T_SUPER")
  }
  node "db1" {
    port = env("T_SUPER")
  }
  replication {
    password = env("T_SUPER")
  }
}`
	r := Parse([]byte(src), "leak.hcl")
	var b bytes.Buffer
	r.WriteDiagnostics(&b)
	if !r.Diags.HasErrors() || strings.Contains(b.String(), superSecret) {
		t.Fatalf("diagnostics:\n%s", b.String())
	}
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"16MB", 16 << 20, true}, {"512kB", 512 << 10, true}, {"1GB", 1 << 30, true}, {"100B", 100, true},
		{"0", 0, true}, {" 2TB ", 2 << 40, true}, {"16 MB", 16 << 20, true},
		{"16 megs", 0, false}, {"", 0, false}, {"-1MB", 0, false}, {"1.5GB", 0, false}, {"99999999999999TB", 0, false},
	}
	for _, tc := range cases {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestFormat(t *testing.T) {
	got := string(Format([]byte("cluster \"x\" {\nprimary=\"db1\"\n  node \"db1\" {\n port = 1\n}\n}\n")))
	want := "cluster \"x\" {\n  primary = \"db1\"\n  node \"db1\" {\n    port = 1\n  }\n}\n"
	if got != want {
		t.Fatalf("got\n%s", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		files, _ := filepath.Glob(dir + "/*.hcl")
		for _, file := range files {
			b, _ := os.ReadFile(file)
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		r := Parse(src, "fuzz.hcl")
		if r.Cluster == nil && !r.Diags.HasErrors() {
			t.Fatal("neither a cluster nor an error")
		}
		if r.Cluster != nil && r.Diags.HasErrors() {
			t.Fatal("a cluster despite errors")
		}
		var b bytes.Buffer
		if err := r.WriteDiagnostics(&b); err != nil {
			t.Fatal(err)
		}
	})
}
