package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Etcd is a real etcd cluster of three members on free loopback ports,
// started for one test (issue 14: etcd as the authority). Tests stop,
// start and pause members to take away one member or the majority.
type Etcd struct {
	Members []*EtcdMember
	t       testing.TB
}

// EtcdMember is one etcd server of an Etcd cluster.
type EtcdMember struct {
	Name      string
	ClientURL string // http://127.0.0.1:PORT
	PeerURL   string
	dir       string
	args      []string
	bin       string
	t         testing.TB

	mu  sync.Mutex
	cmd *exec.Cmd // nil while stopped
}

// Election timings of the test members: etcd's defaults (heartbeat
// 100 ms, election 1 s), so that what the tests measure (a new etcd
// leader, a lease's minimum TTL on the server: 1.5 election timeouts,
// rounded up to 2 s) is what users meet too. EtcdElectionMS bounds how
// long a leader cut off from its majority keeps acting as one.
const (
	etcdHeartbeatMS = 100
	EtcdElectionMS  = 1000
)

// StartEtcd starts three etcd members with data in a temporary directory
// and waits until the cluster has a leader. Every member still running
// (or paused) when the test ends is killed.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd not found in PATH; run `make setup` (it installs Debian's etcd-server with apt-get)")
	}
	root := Dir(t)
	Chown(t, root)
	ports := FreePorts(t, 6)
	e := &Etcd{t: t}
	var initial []string
	for i := range 3 {
		m := &EtcdMember{Name: fmt.Sprintf("etcd%d", i+1), bin: bin, t: t,
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			dir:       filepath.Join(root, fmt.Sprintf("etcd%d", i+1))}
		initial = append(initial, m.Name+"="+m.PeerURL)
		e.Members = append(e.Members, m)
	}
	token := filepath.Base(root)
	for _, m := range e.Members {
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		Chown(t, m.dir)
		m.args = []string{"--name", m.Name, "--data-dir", filepath.Join(m.dir, "data"),
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--heartbeat-interval", fmt.Sprint(etcdHeartbeatMS), "--election-timeout", fmt.Sprint(EtcdElectionMS),
			"--logger", "zap", "--log-outputs", filepath.Join(m.dir, "etcd.log")}
	}
	t.Cleanup(func() {
		for _, m := range e.Members {
			m.Stop()
		}
	})
	for _, m := range e.Members {
		m.Start()
	}
	e.WaitHealthy(30 * time.Second)
	return e
}

// Endpoints are the members' client URLs.
func (e *Etcd) Endpoints() []string {
	var out []string
	for _, m := range e.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// LoseMajority stops two of the three members (SIGKILL): the one left
// answers nothing that needs consensus. RegainMajority starts them again.
func (e *Etcd) LoseMajority() {
	// Both at once: the majority is lost at the second kill, and a test
	// timing from LoseMajority must not count the wait for the first.
	e.Members[1].kill()
	e.Members[2].kill()
	e.Members[1].Stop()
	e.Members[2].Stop()
}

// RegainMajority starts the members LoseMajority stopped and waits for a
// leader.
func (e *Etcd) RegainMajority() {
	e.Members[1].Start()
	e.Members[2].Start()
	e.WaitHealthy(30 * time.Second)
}

// WaitHealthy waits until every running member says the cluster is
// healthy (it has a leader and answers a linearizable read).
func (e *Etcd) WaitHealthy(timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var bad []string
		for _, m := range e.Members {
			if !m.running() {
				continue
			}
			if err := m.Healthy(); err != nil {
				bad = append(bad, m.Name+": "+err.Error())
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("etcd not healthy within %s: %s\n%s", timeout, strings.Join(bad, "; "), e.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Logs is the tail of every member's log, for a failing test.
func (e *Etcd) Logs() string {
	var b strings.Builder
	for _, m := range e.Members {
		data, _ := os.ReadFile(filepath.Join(m.dir, "etcd.log"))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", m.Name, strings.Join(lines, "\n"))
	}
	return b.String()
}

// Healthy asks the member's /health endpoint (true once the cluster has a
// leader and this member can serve a quorum read).
func (m *EtcdMember) Healthy() error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(m.ClientURL + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf [256]byte
	n, _ := resp.Body.Read(buf[:])
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(buf[:n]), `"true"`) {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(buf[:n])))
	}
	return nil
}

func (m *EtcdMember) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// Start runs the member (again, on its data and ports); a running member
// is left alone. It does not wait for the cluster: see Etcd.WaitHealthy.
func (m *EtcdMember) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	cmd := Command(m.t, m.bin, m.args...)
	cmd.Dir = m.dir
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start etcd member %s: %v", m.Name, err)
	}
	m.cmd = cmd
	go func() { _ = cmd.Wait() }()
}

// Stop kills the member (SIGKILL to its process group, as a crash);
// paused or not. A stopped member is left alone.
func (m *EtcdMember) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	// Wait runs in Start's goroutine: wait until the process is gone so
	// that its ports are free for a Start.
	for i := 0; i < 200 && syscall.Kill(m.cmd.Process.Pid, 0) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	m.cmd = nil
}

func (m *EtcdMember) kill() { m.signal(syscall.SIGKILL) }

// Pause stops the member with SIGSTOP (a frozen host: its sockets stay
// open and say nothing); Resume continues it.
func (m *EtcdMember) Pause() { m.signal(syscall.SIGSTOP) }

// Resume continues a paused member (SIGCONT).
func (m *EtcdMember) Resume() { m.signal(syscall.SIGCONT) }

func (m *EtcdMember) signal(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		_ = syscall.Kill(-m.cmd.Process.Pid, sig)
	}
}

// Ready waits for a member's own /health after a Start (with a majority
// running).
func (m *EtcdMember) Ready(ctx context.Context) error {
	for {
		if err := m.Healthy(); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("etcd member %s not healthy: %w", m.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
