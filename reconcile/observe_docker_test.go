package reconcile

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config/clusterfile"
	"github.com/pgha/pgha/internal/testenv"
)

// TestDockerQuickObservation times one watcher check's observation
// (Env.ObserveWith Quick) against the full one (Env.Observe) of a real
// two-node Docker cluster whose standby's container was docker-killed,
// as the failover bench crashes a node: both must say the same of the
// stopped node, and the quick one must not run a probe container (it is
// the difference between them). It prints both timings, 3 rounds each.
func TestDockerQuickObservation(t *testing.T) {
	testenv.RequireDocker(t, testenv.DockerImage)
	name := fmt.Sprintf("qobs%d", time.Now().UnixNano()%1_000_000)
	ports := testenv.FreePorts(t, 2)
	hcl := fmt.Sprintf(`cluster %[1]q {
  primary = "db1"
  postgres {
    password = "su-secret"
  }
  replication {
    password = "repl-secret"
  }
  runtime "docker" {
    image   = %[2]q
    network = %[1]q
    prefix  = "%[1]s-"
    bind    = "127.0.0.1"
  }
  tls {
    enabled = false
  }
  node "db1" {
    port = %[3]d
    slot = "db1"
  }
  node "db2" {
    port = %[4]d
    slot = "db2"
  }
}
`, name, testenv.DockerImage, ports[0], ports[1])
	file := filepath.Join(t.TempDir(), "cluster.hcl")
	if err := os.WriteFile(file, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	r := clusterfile.Parse([]byte(hcl), file)
	if r.Diags.HasErrors() {
		t.Fatalf("cluster.hcl: %v", r.Diags)
	}
	t.Cleanup(func() {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=io.pgha.cluster="+name).Output()
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("docker", "rm", "-f", id).Run()
		}
		out, _ = exec.Command("docker", "volume", "ls", "-q", "--filter", "label=io.pgha.cluster="+name).Output()
		for _, v := range strings.Fields(string(out)) {
			_ = exec.Command("docker", "volume", "rm", "-f", v).Run()
		}
		_ = exec.Command("docker", "network", "rm", name).Run()
	})
	e, err := Open(r.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := e.Run(ctx, RunOptions{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if out, err := exec.Command("docker", "kill", name+"-db2").CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	var full, quick []time.Duration
	for range 3 {
		for _, q := range []bool{false, true} {
			t0 := time.Now()
			s := e.ObserveWith(ctx, ObserveOptions{Quick: q})
			took := time.Since(t0)
			db1, db2 := s.Node("db1"), s.Node("db2")
			if !db1.Reachable || db2.Running || db2.Reachable || !db2.Initialized || !db2.StandbySignal || db2.Container == nil || db2.RuntimeError != "" {
				t.Fatalf("quick=%t: db1 %+v\ndb2 %+v", q, db1, db2)
			}
			if q {
				quick = append(quick, took)
			} else {
				full = append(full, took)
			}
		}
	}
	slices.Sort(full)
	slices.Sort(quick)
	t.Logf("one observation of the cluster, db2's container killed: full %v, quick (the watcher's) %v", full, quick)
	if quick[1] >= full[1]/2 {
		t.Errorf("the quick observation (median %s) is not even twice as fast as the full one (%s)", quick[1], full[1])
	}
}
