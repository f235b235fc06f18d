package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// chaosEtcd is the three-member etcd of -chaos -authority etcd (Debian's
// etcd-server, `make setup`), on free loopback ports, with etcd's default
// election timings, its data under the campaign's scratch directory.
type chaosEtcd struct {
	bin     string
	members []*etcdMember
}

type etcdMember struct {
	name, client, dir string
	args              []string
	cmd               *exec.Cmd
	done              chan struct{}
}

func startChaosEtcd(dir string) (*chaosEtcd, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, fmt.Errorf("etcd not found in PATH; run `make setup` (Debian's etcd-server)")
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	e := &chaosEtcd{bin: bin}
	var initial []string
	for i := range 3 {
		m := &etcdMember{name: fmt.Sprintf("etcd%d", i+1), client: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			dir: filepath.Join(dir, fmt.Sprintf("etcd%d", i+1))}
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		initial = append(initial, m.name+"="+peer)
		m.args = []string{"--name", m.name, "--data-dir", filepath.Join(m.dir, "data"),
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster-state", "new", "--initial-cluster-token", filepath.Base(dir),
			"--logger", "zap", "--log-outputs", filepath.Join(m.dir, "etcd.log")}
		e.members = append(e.members, m)
	}
	for _, m := range e.members {
		m.args = append(m.args, "--initial-cluster", strings.Join(initial, ","))
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			return nil, err
		}
		if err := e.start(m); err != nil {
			e.stop()
			return nil, err
		}
	}
	if err := e.waitHealthy(30 * time.Second); err != nil {
		e.stop()
		return nil, err
	}
	return e, nil
}

func (e *chaosEtcd) endpoints() string {
	var q []string
	for _, m := range e.members {
		q = append(q, fmt.Sprintf("%q", m.client))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func (e *chaosEtcd) start(m *etcdMember) error {
	if m.cmd != nil {
		return nil
	}
	cmd := exec.Command(e.bin, m.args...)
	cmd.Dir = m.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	return nil
}

// kill ends a member with SIGKILL, as a crash, and waits for it.
func (e *chaosEtcd) kill(m *etcdMember) {
	if m.cmd == nil {
		return
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.done
	m.cmd = nil
}

func (e *chaosEtcd) stop() {
	for _, m := range e.members {
		e.kill(m)
	}
}

// waitHealthy waits until every running member's /health says true.
func (e *chaosEtcd) waitHealthy(limit time.Duration) error {
	c := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for {
		var bad []string
		for _, m := range e.members {
			if m.cmd == nil {
				continue
			}
			resp, err := c.Get(m.client + "/health")
			if err != nil {
				bad = append(bad, m.name+": "+err.Error())
				continue
			}
			var buf [256]byte
			n, _ := resp.Body.Read(buf[:])
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(buf[:n]), `"true"`) {
				bad = append(bad, m.name+": "+strings.TrimSpace(string(buf[:n])))
			}
		}
		if len(bad) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd not healthy within %s: %s", limit, strings.Join(bad, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// memberDown kills member i for hold and starts it again.
func (e *chaosEtcd) memberDown(i int, hold time.Duration, sleep func(time.Duration)) string {
	m := e.members[i]
	e.kill(m)
	sleep(hold)
	if err := e.start(m); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("etcd member %s SIGKILLed, started again %.1f s later", m.name, hold.Seconds())
}

// majorityDown kills the two members other than i for hold and starts
// them again.
func (e *chaosEtcd) majorityDown(i int, hold time.Duration, sleep func(time.Duration)) string {
	var names []string
	var down []*etcdMember
	for j, m := range e.members {
		if j != i {
			down = append(down, m)
			names = append(names, m.name)
		}
	}
	for _, m := range down {
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	}
	for _, m := range down {
		e.kill(m)
	}
	sleep(hold)
	for _, m := range down {
		if err := e.start(m); err != nil {
			return err.Error()
		}
	}
	return fmt.Sprintf("etcd majority lost: %s SIGKILLed, started again %.1f s later", strings.Join(names, " and "), hold.Seconds())
}
