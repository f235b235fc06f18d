package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/pgha/pgha/internal/pgconf"
)

// RedisDir is where the managed catalog's volume is mounted in its
// container: the appendonly files, redis.conf and the TLS files.
const (
	RedisDir  = "/data"
	redisPort = 6379
)

// RedisOptions describe the managed catalog's container, as
// local.RedisOptions describe its process.
type RedisOptions struct {
	Addr     string // host:port it is published on
	Password string // requirepass; "" = none
	TLS      *RedisTLS
}

// RedisTLS is the server's certificate, key and the cluster CA, and
// where in the container they go (under RedisDir).
type RedisTLS struct {
	Cert, Key, CA []byte
	Files         pgconf.RedisTLSFiles
}

// StartRedis makes the catalog's volume and container and starts
// redis-server in it with a freshly written redis.conf. A running server
// is left running when only its password changed (redis.conf is read
// again at its next start) and restarted when TLS was turned on or off;
// its appendonly file keeps every key.
func (r *Runtime) StartRedis(ctx context.Context, o RedisOptions) error {
	host, portS, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return fmt.Errorf("catalog address %q: %w", o.Addr, err)
	}
	port, _ := strconv.Atoi(portS)
	if _, err := r.eng.EnsureNetwork(ctx); err != nil {
		return err
	}
	if err := r.eng.EnsureVolume(ctx, redisNode); err != nil {
		return err
	}
	err = r.eng.EnsureContainer(ctx, Spec{Node: redisNode, Role: "redis", Image: r.o.RedisImage, Config: r.o.RedisImage,
		Mount: RedisDir, Port: redisPort, Bind: host, HostPort: port, Cmd: keeper(RedisDir + "/redis.pid")})
	if err != nil {
		return err
	}
	// Redis listens where connections can come from: its address on the
	// cluster network (the published port on the configured bind address
	// leads there, and the nodes' network is the only other way in) and
	// loopback inside its container. Not on every address.
	ip, err := r.eng.Address(ctx, redisNode)
	if err != nil {
		return err
	}
	conf := pgconf.RedisOptions{Bind: []string{ip, "127.0.0.1"}, Port: redisPort, Dir: RedisDir,
		Password: o.Password, Daemonize: true}
	if t := o.TLS; t != nil {
		f := t.Files
		if err := r.writePrivate(ctx, redisNode, "root", map[string][]byte{f.Key: t.Key, f.Cert: t.Cert, f.CA: t.CA}); err != nil {
			return fmt.Errorf("TLS files in %s: %w", r.Name(redisNode), err)
		}
		conf.TLS = &f
	}
	if err := r.write(ctx, redisNode, "root", RedisDir+"/redis.conf.new", pgconf.RedisConf(conf)); err != nil {
		return err
	}
	_, err = r.eng.Exec(ctx, redisNode, "root", nil, nil, "sh", "-c", `p=$0/redis.pid; c=$0/redis.conf
pid=; [ -f $p ] && kill -0 $(cat $p) 2>/dev/null && pid=$(cat $p)
tls() { grep -q '^tls-port ' "$1" 2>/dev/null && echo on; }
if [ -n "$pid" ] && [ "$(tls $c.new)" = "$(tls $c)" ]; then mv $c.new $c; exit 0; fi
mv $c.new $c
if [ -n "$pid" ]; then kill -TERM $pid; while kill -0 $pid 2>/dev/null; do sleep 0.1; done; fi
redis-server $c`, RedisDir)
	if err != nil {
		var ee *ExecError
		if errors.As(err, &ee) && ee.Code == 127 {
			return fmt.Errorf("image %s has no redis-server; set redis_image to a Redis image: %w", r.o.RedisImage, err)
		}
		return fmt.Errorf("start redis in %s: %w", r.Name(redisNode), err)
	}
	return nil
}

// StopRedis stops redis-server in its container (SIGTERM: it writes its
// appendonly file and exits), waiting up to 30 seconds; the container
// stays.
func (r *Runtime) StopRedis(ctx context.Context) error {
	_, err := r.eng.Exec(ctx, redisNode, "root", nil, nil, "sh", "-c", `p=`+RedisDir+`/redis.pid
if [ -f $p ] && kill $(cat $p) 2>/dev/null; then
  i=0; while [ -f $p ] && kill -0 $(cat $p) 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
fi
true`)
	if err != nil {
		return fmt.Errorf("stop redis in %s: %w", r.Name(redisNode), err)
	}
	return nil
}

// RemoveRedis removes the catalog's container and, unless keepData, its
// volume; the network goes with the last container.
func (r *Runtime) RemoveRedis(ctx context.Context, keepData bool) error {
	return r.removeNode(ctx, redisNode, keepData)
}
