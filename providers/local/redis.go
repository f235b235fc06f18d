package local

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
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

	"github.com/pgha/pgha/internal/pgconf"
)

// redisWait bounds starting and stopping Redis when the caller's context
// has no deadline.
const redisWait = 30 * time.Second

// RedisOptions describe the catalog's managed redis-server.
type RedisOptions struct {
	Addr     string // host:port it listens on
	Password string // requirepass; "" = none
	Dir      string // its own directory: redis.conf, appendonly files, redis.pid, redis.log
	// TLS, when set, makes the server speak TLS only, on the same port.
	TLS *RedisTLS
}

// RedisTLS is the managed Redis's certificate, key and the CA its
// clients' certificates must chain to (PEM, written under Dir/tls), and
// the client configuration StartRedis checks the server with.
type RedisTLS struct {
	Cert, Key, CA []byte
	Client        *tls.Config
}

type redisPaths struct {
	host, port                string
	dir, conf, pid, log, addr string
	tls                       *tls.Config // how to reach the server; nil = plain
}

func redisLayout(o RedisOptions) (redisPaths, error) {
	host, port, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return redisPaths{}, fmt.Errorf("catalog address %q: %w", o.Addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return redisPaths{}, fmt.Errorf("catalog address %q: bad port", o.Addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	dir, err := absPath("redis directory", o.Dir)
	if err != nil {
		return redisPaths{}, err
	}
	return redisPaths{host: host, port: port, dir: dir, addr: net.JoinHostPort(host, port),
		conf: filepath.Join(dir, "redis.conf"), pid: filepath.Join(dir, "redis.pid"), log: filepath.Join(dir, "redis.log")}, nil
}

// StartRedis starts the managed redis-server as RunAs and waits until it
// answers PING. Persistence is on (appendonly, fsync every second): the
// catalog holds the backup history. The password is written to redis.conf
// (0600, owned by RunAs), never to a command line where ps would show it.
// A server already running from Dir is left alone (but must answer).
func (r *Runtime) StartRedis(ctx context.Context, o RedisOptions) error {
	p, err := redisLayout(o)
	if err != nil {
		return err
	}
	ctx, cancel := withDefaultTimeout(ctx, redisWait)
	defer cancel()
	if err := CheckRedisOwned(p.dir); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	var files *pgconf.RedisTLSFiles
	if o.TLS != nil {
		p.tls = o.TLS.Client
		if err := r.ensurePrivateDir(p.dir); err != nil {
			return fmt.Errorf("start redis-server: %w", err)
		}
		d := filepath.Join(p.dir, "tls") // config.Cluster.RedisTLS names the same files
		files = &pgconf.RedisTLSFiles{Cert: d + "/redis.crt", Key: d + "/redis.key", CA: d + "/ca.crt"}
		if err := r.WritePrivateFiles(map[string][]byte{files.Cert: o.TLS.Cert, files.Key: o.TLS.Key, files.CA: o.TLS.CA}); err != nil {
			return fmt.Errorf("start redis-server: %w", err)
		}
	}
	conf := redisConf(p, o.Password, files)
	if pid, ok := r.redisRunning(p); ok {
		old, _ := os.ReadFile(p.conf)
		if bytes.Contains(old, []byte("\ntls-port ")) == (o.TLS != nil) {
			return r.waitRedis(ctx, p, o.Password, pid)
		}
		// TLS was turned on (or off): a restart reads the new
		// configuration; the appendonly file keeps every key.
		if err := r.StopRedis(ctx, o); err != nil {
			return err
		}
	}
	bin, err := redisBinary()
	if err != nil {
		return err
	}
	// Someone else on the port would answer our PING and pass for the
	// managed server.
	if c, err := (&net.Dialer{Timeout: 300 * time.Millisecond}).DialContext(ctx, "tcp", p.addr); err == nil {
		c.Close()
		return fmt.Errorf("start redis-server: %s already accepts connections, but not from the managed server of %s; stop that server or choose another catalog address", p.addr, p.dir)
	}
	if err := r.ensurePrivateDir(p.dir); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	if err := r.writeFileAtomic(p.conf, conf, 0o600); err != nil {
		return fmt.Errorf("start redis-server: write %s: %w", p.conf, err)
	}
	_ = os.Remove(p.pid) // stale: checked above that it names no live server
	var logStart int64
	if fi, err := os.Stat(p.log); err == nil {
		logStart = fi.Size()
	}
	// daemonize yes: the first process exits once the server has forked.
	out, err := output(r.command(ctx, bin, p.conf), o.Password)
	if err != nil {
		return fmt.Errorf("start redis-server %s: %w%s%s", p.conf, err, withOutput(out), logTail(p.log, 10))
	}
	return r.waitStarted(ctx, p, o.Password, logStart)
}

func redisBinary() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/local/bin/redis-server"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("redis-server not found; run `make setup` (apt-get install redis-server), or set managed = false and run Redis yourself")
}

// redisConf renders redis.conf through pgconf (one renderer for every
// runtime), listening on the catalog address's host only.
func redisConf(p redisPaths, password string, tls *pgconf.RedisTLSFiles) []byte {
	port, _ := strconv.Atoi(p.port)
	return pgconf.RedisConf(pgconf.RedisOptions{Bind: []string{p.host}, Port: port, Dir: p.dir, Password: password,
		Daemonize: true, PidFile: p.pid, LogFile: p.log, TLS: tls})
}

// waitStarted waits for the new server's pid file and PING. The server
// logs as "<pid>:M ..." once forked; when that process has died (a bad
// directory, a port taken meanwhile) the wait ends at once with its log.
func (r *Runtime) waitStarted(ctx context.Context, p redisPaths, password string, logStart int64) error {
	for {
		if pid, ok := r.redisRunning(p); ok {
			return r.waitRedis(ctx, p, password, pid)
		}
		if pid := serverPID(p.log, logStart); pid > 0 && !alive(pid) {
			return fmt.Errorf("redis-server (pid %d) exited while starting%s", pid, logTail(p.log, 10))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis-server did not write %s: %w%s", p.pid, ctx.Err(), logTail(p.log, 10))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// serverPID is the pid of the last forked server ("M" role) that logged
// after offset, or 0.
func serverPID(log string, offset int64) int {
	f, err := os.Open(log)
	if err != nil {
		return 0
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return 0
	}
	pid := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		head, _, ok := strings.Cut(sc.Text(), " ")
		if id, role, ok2 := strings.Cut(head, ":"); ok && ok2 && role == "M" {
			if n, err := strconv.Atoi(id); err == nil {
				pid = n
			}
		}
	}
	return pid
}

// waitRedis waits until the server answers PING (it refuses commands while
// loading its appendonly file). A refused password ends the wait at once.
func (r *Runtime) waitRedis(ctx context.Context, p redisPaths, password string, pid int) error {
	for {
		err := redisPing(ctx, p.addr, password, p.tls)
		if err == nil {
			return nil
		}
		var fatal *redisFatal
		if errors.As(err, &fatal) {
			return fmt.Errorf("redis-server at %s: %w", p.addr, err)
		}
		if !alive(pid) {
			return fmt.Errorf("redis-server (pid %d) at %s exited: %v%s", pid, p.addr, err, logTail(p.log, 10))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis-server at %s does not answer: %v%s", p.addr, err, logTail(p.log, 10))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// redisFatal is a reply waiting will not change (a wrong password).
type redisFatal struct{ reply string }

func (e *redisFatal) Error() string { return e.reply }

// redisPing speaks just enough RESP to AUTH and PING, so that starting the
// catalog needs no client library and no second connection pool.
// Over TLS when cfg is set.
func redisPing(ctx context.Context, addr, password string, cfg *tls.Config) error {
	var c net.Conn
	var err error
	if cfg != nil {
		c, err = (&tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: cfg}).DialContext(ctx, "tcp", addr)
	} else {
		c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(2 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	rd := bufio.NewReader(c)
	reply := func(cmd ...string) (string, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(cmd))
		for _, a := range cmd {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			return "", err
		}
		line, err := rd.ReadString('\n')
		return strings.TrimRight(line, "\r\n"), err
	}
	if password != "" {
		line, err := reply("AUTH", password)
		if err != nil {
			return err
		}
		if line != "+OK" {
			if strings.HasPrefix(line, "-LOADING") {
				return errors.New(line)
			}
			// Redis never echoes the password; its reply is safe to show.
			return &redisFatal{reply: "password refused: " + strings.TrimPrefix(line, "-")}
		}
	}
	line, err := reply("PING")
	if err != nil {
		return err
	}
	switch {
	case line == "+PONG":
		return nil
	case strings.HasPrefix(line, "-NOAUTH"):
		return &redisFatal{reply: "it requires a password and none is configured"}
	default:
		return errors.New(strings.TrimPrefix(line, "-"))
	}
}

// RedisRunning reports the managed server's pid when redis.pid names a
// live redis-server working in Dir (the pid of a crashed one may have been
// reused by anything).
func (r *Runtime) RedisRunning(o RedisOptions) (pid int, ok bool) {
	p, err := redisLayout(o)
	if err != nil {
		return 0, false
	}
	return r.redisRunning(p)
}

func (r *Runtime) redisRunning(p redisPaths) (int, bool) {
	b, err := os.ReadFile(p.pid)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !alive(pid) || !isRedis(pid) || !sameDir(pid, p.dir) {
		return 0, false
	}
	return pid, true
}

// isRedis: redis-server retitles itself "redis-server host:port", and its
// comm stays "redis-server".
func isRedis(pid int) bool {
	for _, f := range []string{"cmdline", "comm"} {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f)); err == nil && strings.Contains(string(b), "redis") {
			return true
		}
	}
	return false
}

// StopRedis stops the managed server with SIGTERM, on which it flushes the
// appendonly file, and waits for the process to exit. A stopped server is
// no error.
func (r *Runtime) StopRedis(ctx context.Context, o RedisOptions) error {
	p, err := redisLayout(o)
	if err != nil {
		return err
	}
	pid, ok := r.redisRunning(p)
	if !ok {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop redis-server (pid %d): %w", pid, err)
	}
	ctx, cancel := withDefaultTimeout(ctx, redisWait)
	defer cancel()
	for alive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis-server (pid %d) did not stop: %w%s", pid, ctx.Err(), logTail(p.log, 10))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
