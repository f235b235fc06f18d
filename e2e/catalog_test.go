package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLocalCatalogAuth(t *testing.T) {
	t.Parallel()
	catalogAuthScenario(t, "local")
}

func TestDockerCatalogAuth(t *testing.T) {
	t.Parallel()
	catalogAuthScenario(t, "docker")
}

// catalogAuthScenario: the managed catalog requires the password pgha
// generated (0600), refuses an unauthenticated client, listens only where
// it must, and a catalog left open by an earlier pgha is restarted with a
// password by one visible plan action. pghaRun checks that no output of
// any command shows the password.
func catalogAuthScenario(t *testing.T, rt string) {
	c := newCluster(t, rt, 1)
	r := c.mustPgha("apply", "-auto-approve")
	if !strings.Contains(r.stdout, "Generated its password into "+filepath.Join(c.dir, ".secrets", "catalog")) {
		t.Errorf("the first apply does not say where the catalog password went:\n%s", r.stdout)
	}
	pwFile := filepath.Join(c.dir, ".secrets", "catalog")
	fi, err := os.Stat(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", pwFile, fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(pwFile)); di.Mode().Perm() != 0o700 {
		t.Fatalf("%s has mode %v, want 0700", filepath.Dir(pwFile), di.Mode().Perm())
	}
	pw := c.catalogPassword()
	if len(pw) != 43 {
		t.Fatalf("catalog password has %d characters, want 43 (32 random bytes, base64url)", len(pw))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", c.redis)
	// The catalog speaks TLS (on by default): these clients bring pgha's
	// certificate, so that what is refused is refused for the password.
	resp := func(t *testing.T, addr string, words ...string) []string {
		t.Helper()
		return respTLS(t, addr, c.catalogTLS(), words...)
	}
	checkRefused := func(t *testing.T) {
		t.Helper()
		if got := resp(t, addr, "PING"); !strings.HasPrefix(got[0], "-NOAUTH") {
			t.Fatalf("unauthenticated PING answered %q, want -NOAUTH", got)
		}
		if got := resp(t, addr, "AUTH", "not-the-password", "PING"); !strings.HasPrefix(got[0], "-WRONGPASS") {
			t.Fatalf("AUTH with a wrong password answered %q, want -WRONGPASS", got)
		}
		if got := resp(t, addr, "AUTH", c.catalogPassword(), "PING"); got[0] != "+OK" || got[1] != "+PONG" {
			t.Fatalf("AUTH with the password answered %q, want +OK +PONG", got)
		}
	}
	checkRefused(t)

	// Where it listens, and protected mode.
	var conf string
	if rt == "docker" {
		out, err := exec.Command("docker", "exec", "pgha-"+c.name+"-redis", "cat", "/data/redis.conf").CombinedOutput()
		if err != nil {
			t.Fatalf("read redis.conf: %v %s", err, out)
		}
		conf = string(out)
		ip, err := exec.Command("docker", "inspect", "-f", `{{(index .NetworkSettings.Networks "pgha-`+c.name+`").IPAddress}}`, "pgha-"+c.name+"-redis").Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("bind %q \"127.0.0.1\"\n", strings.TrimSpace(string(ip))); !strings.Contains(conf, want) {
			t.Errorf("redis.conf lacks %q:\n%s", want, conf)
		}
		// A client on the cluster network (a node's container) is refused
		// too: in plain text, the TLS port drops it before any password.
		out, _ = exec.Command("docker", "exec", c.container("db1"), "redis-cli", "-h", "pgha-"+c.name+"-redis", "ping").CombinedOutput()
		if strings.Contains(string(out), "PONG") || !strings.Contains(string(out), "Error") {
			t.Errorf("redis-cli ping from the cluster network answered %q, want an error", out)
		}
	} else {
		b, err := os.ReadFile(filepath.Join(c.dir, "data", "redis", "redis.conf"))
		if err != nil {
			t.Fatal(err)
		}
		conf = string(b)
		if !strings.Contains(conf, "bind \"127.0.0.1\"\n") {
			t.Errorf("redis.conf does not bind loopback only:\n%s", conf)
		}
	}
	if !strings.Contains(conf, "protected-mode yes\n") || strings.Contains(conf, "0.0.0.0") || !strings.Contains(conf, "requirepass ") {
		t.Errorf("redis.conf:\n%s", conf)
	}
	for _, args := range [][]string{{"plan"}, {"plan", "-json"}, {"status"}, {"status", "-json"}} {
		c.mustPgha(args...) // pghaRun fails the test if the password shows
	}

	t.Run("a catalog left open by an earlier pgha is restarted with a password", func(t *testing.T) {
		c := c.with(t)
		// What earlier versions left: no requirepass, and no password file.
		if got := resp(t, addr, "AUTH", pw, "CONFIG", "SET", "protected-mode", "no", "CONFIG", "SET", "requirepass", ""); got[1] != "+OK" || got[2] != "+OK" {
			t.Fatalf("CONFIG SET protected-mode, requirepass: %q", got)
		}
		if err := os.Remove(pwFile); err != nil {
			t.Fatal(err)
		}
		if got := resp(t, addr, "PING"); got[0] != "+PONG" {
			t.Fatalf("the catalog is not open: %q", got)
		}
		r := c.pgha("plan", "-detailed-exitcode")
		if r.code != 2 || !strings.Contains(r.stdout, "~ catalog.restart[redis]") ||
			!strings.Contains(r.stdout, "accepts clients without a password") || !strings.Contains(r.stdout, `"(sensitive)"`) {
			t.Fatalf("plan for an open catalog:\n%s", r)
		}
		r = c.mustPgha("apply", "-auto-approve")
		if !strings.Contains(r.stdout, "catalog.restart[redis]: done") || !strings.Contains(r.stdout, "generated the catalog password into "+pwFile) {
			t.Fatalf("apply:\n%s", r)
		}
		if c.catalogPassword() == pw || c.catalogPassword() == "" {
			t.Fatal("no new password was generated")
		}
		checkRefused(t)
		if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 {
			t.Fatalf("not converged after securing the catalog:\n%s", r)
		}
	})
}

// respTLS sends commands (each a single word, or AUTH with its argument,
// or CONFIG SET with two) over one fresh connection (TLS when cfg is set)
// and returns the first line of every reply.
func respTLS(t *testing.T, addr string, cfg *tls.Config, words ...string) []string {
	t.Helper()
	var cmds [][]string
	for i := 0; i < len(words); {
		switch words[i] {
		case "AUTH":
			cmds = append(cmds, words[i:i+2])
			i += 2
		case "CONFIG":
			cmds = append(cmds, words[i:i+4])
			i += 4
		default:
			cmds = append(cmds, words[i:i+1])
			i++
		}
	}
	var conn net.Conn
	var err error
	if cfg != nil {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	} else {
		conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
	}
	if err != nil {
		t.Fatalf("connect to the catalog at %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	rd := bufio.NewReader(conn)
	var out []string
	for _, cmd := range cmds {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(cmd))
		for _, a := range cmd {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := conn.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("read the catalog's reply to %s: %v", cmd[0], err)
		}
		out = append(out, strings.TrimRight(line, "\r\n"))
	}
	return out
}
