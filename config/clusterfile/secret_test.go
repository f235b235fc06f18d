package clusterfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestSecretsNeverPrinted loads a file whose passwords come from env() and
// file() with distinctive values, and prints the cluster every usual way.
func TestSecretsNeverPrinted(t *testing.T) {
	setSecrets(t)
	r := Load("testdata/good/three_node.hcl")
	c := r.Cluster
	if c == nil {
		t.Fatalf("%v", r.Diags)
	}
	if c.Postgres.Password.Reveal() != superSecret {
		t.Fatal("the test would prove nothing: the password is not the secret")
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("loaded", "password", c.Postgres.Password, "replication", c.Replication)
	outputs := map[string]string{
		"%v":          fmt.Sprintf("%v", c),
		"%+v":         fmt.Sprintf("%+v", c),
		"%#v":         fmt.Sprintf("%#v", c),
		"%+v value":   fmt.Sprintf("%+v", *c),
		"%#v value":   fmt.Sprintf("%#v", *c),
		"%d":          fmt.Sprintf("%d", c.Postgres.Password),
		"%x":          fmt.Sprintf("%x", c.Postgres),
		"%s":          fmt.Sprintf("%s %s", c.Replication.User, c.Replication.Password), // the struct holds a *Synchronous, which %s cannot print
		"%q":          fmt.Sprintf("%q", c.Replication.Password),
		"Sprint":      fmt.Sprint(c.Catalog),
		"json":        string(js),
		"slog":        logged.String(),
		"diagnostics": diagText(t, r),
	}
	for what, out := range outputs {
		assertNoSecret(t, what, out)
	}
	if !strings.Contains(outputs["%+v"], "(sensitive)") || !strings.Contains(outputs["json"], `"Password":"(sensitive)"`) {
		t.Errorf("placeholder missing:\n%s\n%s", outputs["%+v"], outputs["json"])
	}
}

// TestSecretsNotEchoedInErrors uses values from env() where diagnostics
// would otherwise quote them.
func TestSecretsNotEchoedInErrors(t *testing.T) {
	setSecrets(t)
	src := `cluster "x" {
  primary = env("T_SUPER")
  postgres {
    password  = env("T_SUPER")
    superuser = env("T_SUPER")
    parameters = { work_mem = env("T_SUPER"), (env("T_REDIS")) = 1 }
  }
  node "db1" {
    port = env("T_SUPER")
    slot = env("T_SUPER")
  }
  node "db2" {
    host = env("T_SUPER")
    port = 5442
  }
  node "db3" {
    host = env("T_SUPER")
    port = 5442
    slot = env("PGHA_REDIS_PASSWORD")
  }
  node "db4" {
    port = 5444
    slot = env("PGHA_REDIS_PASSWORD")
  }
  replication {
    user     = env("T_SUPER")
    password = file(env("T_SUPER"))
  }
  failover {
    check_interval = env("T_SUPER")
    maximum_lag    = env("T_SUPER")
    failback       = env("T_SUPER")
  }
  catalog "redis" {
    address = env("T_REDIS")
    db      = env("T_REDIS")
  }
}`
	t.Setenv("PGHA_REDIS_PASSWORD", "same_slot")
	r := Parse([]byte(src), "leak.hcl")
	out := diagText(t, r)
	if len(r.Diags) < 12 {
		t.Errorf("expected an error for nearly every attribute, got:\n%s", out)
	}
	assertNoSecret(t, "diagnostics", out)
	assertNoSecret(t, "Diags.Error()", r.Diags.Error())
	if strings.Contains(out, "same_slot") {
		t.Errorf("a slot name from env() is quoted:\n%s", out)
	}
}
