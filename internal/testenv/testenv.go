// Package testenv starts the real systems integration tests run against:
// PostgreSQL servers, redis-server processes and three-member etcd
// clusters on free loopback ports.
//
// A missing binary is a test failure that says how to install it, never a
// skip: `make setup` installs everything these helpers need.
package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const installHint = "run `make setup` (it installs PostgreSQL, redis-server and etcd-server with apt-get)"

// Ports are handed out below the kernel's ephemeral range (32768-60999
// by default), where the local end of every outgoing connection is
// taken: a port the kernel gave to a probe socket and took back could be
// the next client connection's a moment later, before the server the
// test meant it for had bound it (seen: "bind: address already in use"
// for a watcher's health port). Within this process no port is handed
// out twice; between test processes, a random pick among 12,000 makes a
// clash unlikely, and the bind check rules out one in use.
const (
	portLow  = 20000
	portHigh = 32768
)

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no other test of this process was given.
func FreePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 1000 {
		p := portLow + rand.IntN(portHigh-portLow)
		if portsUsed[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		portsUsed[p] = true
		return p
	}
	t.Fatalf("no free port between %d and %d on 127.0.0.1", portLow, portHigh)
	return 0
}

// FreePorts returns n distinct free ports.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	seen := map[int]bool{}
	var ports []int
	for len(ports) < n {
		p := FreePort(t)
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	return ports
}

// Dir returns a fresh temporary directory that the unprivileged PostgreSQL
// user can traverse (t.TempDir makes 0700 directories owned by root).
func Dir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatalf("make %s traversable: %v", p, err)
		}
	}
	return d
}

// RunAs returns the OS user servers run as: "postgres" when the tests run as
// root (PostgreSQL refuses root), else "" (the current user).
func RunAs(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return ""
	}
	if _, err := user.Lookup("postgres"); err != nil {
		t.Fatalf("tests run as root and need the `postgres` OS user to run PostgreSQL: %v; %s", err, installHint)
	}
	return "postgres"
}

// PGBinDir finds the PostgreSQL server binaries (newest major version under
// /usr/lib/postgresql, else pg_config --bindir).
func PGBinDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("PGHA_TEST_PG_BIN"); d != "" {
		return d
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return majorOf(matches[i]) > majorOf(matches[j]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0])
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	t.Fatalf("PostgreSQL server binaries (initdb, pg_ctl) not found; %s", installHint)
	return ""
}

func majorOf(p string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
	return n
}

// Command returns cmd prepared to run as the RunAs user.
func Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	if u := RunAs(t); u != "" {
		uid, gid := lookupIDs(t, u)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}, Setpgid: true}
		cmd.Env = append(os.Environ(), "HOME=/tmp", "USER="+u)
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	return cmd
}

// Chown gives path to the RunAs user (no-op when not root).
func Chown(t testing.TB, path string) {
	t.Helper()
	if u := RunAs(t); u != "" {
		uid, gid := lookupIDs(t, u)
		if err := os.Chown(path, int(uid), int(gid)); err != nil {
			t.Fatalf("chown %s: %v", path, err)
		}
	}
}

func lookupIDs(t testing.TB, name string) (uint32, uint32) {
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("look up user %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uint32(uid), uint32(gid)
}

// Redis is a redis-server started for one test.
type Redis struct {
	Addr string
	Port int
	cmd  *exec.Cmd
}

// Stop kills the server (tests use it to make the catalog unreachable).
func (r *Redis) Stop() {
	if r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd.Process = nil
	}
}

// Signal sends sig to the server: SIGSTOP makes it a store that does not
// answer (its clients time out), SIGCONT brings it back.
func (r *Redis) Signal(sig syscall.Signal) error {
	if r.cmd.Process == nil {
		return fmt.Errorf("redis-server on %s is not running", r.Addr)
	}
	return r.cmd.Process.Signal(sig)
}

// StartRedis starts redis-server on a free port without persistence; it is
// stopped when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH; %s", installHint)
	}
	port := FreePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	r := &Redis{Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, cmd: cmd}
	t.Cleanup(r.Stop)
	waitTCP(t, r.Addr, 10*time.Second)
	return r
}

// Postgres is a single PostgreSQL server started for one test.
type Postgres struct {
	Host, User, Password string
	Port                 int
	DataDir              string
	BinDir               string
}

// DSN is a libpq URL for the server's superuser.
func (p *Postgres) DSN() string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/postgres?sslmode=disable", p.User, p.Password, p.Host, p.Port)
}

// StartPostgres initialises (with data checksums and scram) and starts a
// PostgreSQL server on a free port; it is stopped when the test ends.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin := PGBinDir(t)
	root := Dir(t)
	p := &Postgres{Host: "127.0.0.1", User: "postgres", Password: "test-secret-pw", Port: FreePort(t),
		DataDir: filepath.Join(root, "pgdata"), BinDir: bin}
	pwfile := filepath.Join(root, "pw")
	if err := os.WriteFile(pwfile, []byte(p.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	Chown(t, pwfile)
	Chown(t, root)
	run(t, Command(t, filepath.Join(bin, "initdb"), "-D", p.DataDir, "-U", p.User, "--pwfile", pwfile,
		"--data-checksums", "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"))
	conf := fmt.Sprintf("\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nwal_level = replica\nmax_wal_senders = 10\nfsync = off\n", p.Port)
	f, err := os.OpenFile(filepath.Join(p.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(conf)
	f.Close()
	hba := "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(p.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	Chown(t, filepath.Join(p.DataDir, "pg_hba.conf"))
	run(t, Command(t, filepath.Join(bin, "pg_ctl"), "-D", p.DataDir, "-l", filepath.Join(root, "log"), "-w", "start"))
	t.Cleanup(func() {
		_ = Command(t, filepath.Join(bin, "pg_ctl"), "-D", p.DataDir, "-m", "immediate", "-w", "stop").Run()
	})
	return p
}

func run(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

func waitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not accept connections within %s: %v", addr, timeout, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StartStandby clones primary with pg_basebackup and starts the copy as a
// streaming standby on a free port; it is stopped when the test ends (before
// the primary, as cleanups run last-in first-out).
//
// pg_basebackup -R writes standby.signal and primary_conninfo (with the
// password it used, which tests of redaction rely on). The standby's
// cluster_name is name, which its WAL receiver reports as application_name
// in the primary's pg_stat_replication. A non-empty slot is created on the
// primary by pg_basebackup (-C -S) and used for streaming.
func StartStandby(t testing.TB, primary *Postgres, name, slot string) *Postgres {
	t.Helper()
	root := Dir(t)
	Chown(t, root)
	s := &Postgres{Host: primary.Host, User: primary.User, Password: primary.Password, Port: FreePort(t),
		DataDir: filepath.Join(root, "pgdata"), BinDir: primary.BinDir}
	args := []string{"-D", s.DataDir, "-h", primary.Host, "-p", strconv.Itoa(primary.Port), "-U", primary.User,
		"-X", "stream", "-R", "-c", "fast", "-w"}
	if slot != "" {
		args = append(args, "-C", "-S", slot)
	}
	cmd := Command(t, filepath.Join(primary.BinDir, "pg_basebackup"), args...)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "PGPASSWORD="+primary.Password)
	run(t, cmd)
	conf := fmt.Sprintf("\nport = %d\ncluster_name = '%s'\n", s.Port, name)
	f, err := os.OpenFile(filepath.Join(s.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(conf)
	f.Close()
	run(t, Command(t, filepath.Join(s.BinDir, "pg_ctl"), "-D", s.DataDir, "-l", filepath.Join(root, "log"), "-w", "start"))
	t.Cleanup(func() {
		_ = Command(t, filepath.Join(s.BinDir, "pg_ctl"), "-D", s.DataDir, "-m", "immediate", "-w", "stop").Run()
	})
	return s
}

// DockerImage is the PostgreSQL image the docker tests run: a local
// build (`make image`), since no registry can be reached here; users run
// official images, and the docker runtime needs nothing this one has
// beyond PostgreSQL's programs and a POSIX sh.
const DockerImage = "pgha-test/postgres:17"

// RequireDocker fails (never skips) when the Docker engine or image is
// missing, saying how to get them.
func RequireDocker(t testing.TB, image string) {
	t.Helper()
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Fatalf("the Docker engine is not reachable (%v: %s); start dockerd (on Debian: apt-get install docker.io)", err, out)
	}
	if err := exec.Command("docker", "image", "inspect", image).Run(); err != nil {
		t.Fatalf("test image %s is missing; build it with `make image`", image)
	}
}
