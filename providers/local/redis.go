package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RedisOptions describe the managed catalog server.
type RedisOptions struct {
	Addr     string // host:port
	Password string
	Dir      string // its data directory: redis.conf, appendonly files, pid, log
}

// StartRedis starts a redis-server with persistence on (appendonly) and
// waits until it answers PING. The password goes into redis.conf (0600),
// never onto the command line. A running server is left alone.
func (r *Runtime) StartRedis(ctx context.Context, o RedisOptions) error {
	if _, ok := r.RedisRunning(o); ok {
		return nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return errors.New("redis-server not found in PATH; run `make setup` (apt-get install redis-server) or set managed = false")
	}
	host, port, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return fmt.Errorf("catalog address %q: %w", o.Addr, err)
	}
	if err := r.checkReachable(filepath.Dir(o.Dir)); err != nil {
		return err
	}
	if err := r.mkdirOwned(o.Dir, 0o700); err != nil {
		return err
	}
	conf := fmt.Sprintf(`# Managed by pgha: edit cluster.hcl instead.
bind %s
port %s
dir %s
appendonly yes
appendfsync everysec
daemonize yes
pidfile %s
logfile %s
protected-mode no
`, host, port, o.Dir, filepath.Join(o.Dir, "redis.pid"), filepath.Join(o.Dir, "redis.log"))
	if o.Password != "" {
		conf += fmt.Sprintf("requirepass %q\n", o.Password)
	}
	confPath := filepath.Join(o.Dir, "redis.conf")
	if err := r.writeFile(confPath, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("write redis.conf: %w", err)
	}
	cmd := r.command(ctx, bin, confPath)
	if err := run(cmd, "start redis-server"); err != nil {
		return fmt.Errorf("%w%s", err, logTail(filepath.Join(o.Dir, "redis.log"), 10))
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if err := ping(wctx, o); err == nil {
			return nil
		} else if wctx.Err() != nil {
			return fmt.Errorf("redis-server at %s did not answer: %w%s", o.Addr, err, logTail(filepath.Join(o.Dir, "redis.log"), 10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping speaks just enough RESP to authenticate and PING.
func ping(ctx context.Context, o RedisOptions) error {
	c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	rd := bufio.NewReader(c)
	if o.Password != "" {
		fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(o.Password), o.Password)
		if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			return errors.New("redis refused the catalog password")
		}
	}
	fmt.Fprint(c, "*1\r\n$4\r\nPING\r\n")
	line, err := rd.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected PING reply %q", strings.TrimSpace(line))
	}
	return nil
}

// RedisRunning reports the managed server's pid when its process is alive.
func (r *Runtime) RedisRunning(o RedisOptions) (int, bool) {
	b, err := os.ReadFile(filepath.Join(o.Dir, "redis.pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "redis-server") {
		return 0, false
	}
	return pid, true
}

// StopRedis stops the managed server (SIGTERM; it flushes the appendonly
// file on the way out) and waits for it to exit.
func (r *Runtime) StopRedis(ctx context.Context, o RedisOptions) error {
	pid, ok := r.RedisRunning(o)
	if !ok {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop redis-server (pid %d): %w", pid, err)
	}
	for {
		if _, ok := r.RedisRunning(o); !ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis-server (pid %d) did not stop: %w", pid, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
