// Package docker runs PostgreSQL nodes and the managed Redis as containers
// through the Docker Engine API. Containers run docker's init and a small
// keeper shell; Runtime execs initdb, pg_ctl, pg_basebackup, pg_rewind and
// pg_controldata inside them as the postgres user, so any image with the
// PostgreSQL server binaries and a POSIX sh works and nothing depends on
// one image's entrypoint script. Runtime's methods mirror providers/local's,
// a node name (and its published port) in place of a data directory.
//
// Every resource carries pgha's labels; observation finds resources by
// label and never touches unlabelled ones.
package docker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
)

// Labels pgha puts on what it creates.
const (
	LabelCluster = "io.pgha.cluster"
	LabelNode    = "io.pgha.node"
	LabelRole    = "io.pgha.role" // "postgres" or "redis"
	LabelConfig  = "io.pgha.config"
)

// Options say which engine, names and images to use.
type Options struct {
	Host string // "" = DOCKER_HOST or the local socket
	// CAFile, CertFile and KeyFile are mutual TLS with a tcp:// Host: the
	// CA the engine's certificate must chain to (and nothing else), and
	// pgha's client certificate. All three or none.
	CAFile, CertFile, KeyFile string
	Cluster                   string
	Prefix                    string // container and volume name prefix
	Network                   string

	Image      string // the nodes' PostgreSQL image (Runtime only)
	RedisImage string // the managed catalog's image (Runtime only)
	Bind       string // host address node ports are published on (Runtime only)
}

// Engine talks to one Docker engine for one cluster.
type Engine struct {
	cli *client.Client
	o   Options

	mu      sync.Mutex
	binDirs map[string]string // image → PostgreSQL bin dir
}

// NewEngine connects to the engine, negotiating the API version: the
// engine may be older than this client.
//
// A Host from the cluster file is used as written, with its TLS files:
// DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH are not read then,
// so that the file alone says which engine and which certificates. Without
// a Host, the environment decides, as for the docker CLI.
func NewEngine(o Options) (*Engine, error) {
	var opts []client.Opt
	switch {
	case o.Host == "":
		opts = append(opts, client.FromEnv)
	case o.CertFile != "":
		cfg, err := clientTLS(o)
		if err != nil {
			return nil, err
		}
		// The transport must carry the TLS config before WithHost
		// configures it for tcp: the client then speaks https, and its
		// hijacked connections (exec, attach) dial with the same config.
		opts = append(opts, client.WithHTTPClient(&http.Client{
			Transport:     &http.Transport{TLSClientConfig: cfg, MaxIdleConns: 6, IdleConnTimeout: 30 * time.Second},
			CheckRedirect: client.CheckRedirect}),
			client.WithHost(o.Host))
	default:
		opts = append(opts, client.WithHost(o.Host))
	}
	opts = append(opts, client.WithAPIVersionNegotiation())
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Engine{cli: cli, o: o, binDirs: map[string]string{}}, nil
}

// clientTLS is mutual TLS with a remote engine: the engine's certificate
// must chain to ca_file alone (not the system's roots: an engine's CA is
// its operator's own, as `dockerd --tlsverify` sets up), and pgha shows
// cert_file. Errors name the attribute, not the path, and never a file's
// content.
func clientTLS(o Options) (*tls.Config, error) {
	ca, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("runtime \"docker\" ca_file: %w", pathless(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("runtime \"docker\" ca_file holds no PEM certificate: give the CA that signed the engine's certificate (Docker's ca.pem)")
	}
	certPEM, err := os.ReadFile(o.CertFile)
	if err != nil {
		return nil, fmt.Errorf("runtime \"docker\" cert_file: %w", pathless(err))
	}
	keyPEM, err := os.ReadFile(o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("runtime \"docker\" key_file: %w", pathless(err))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("runtime \"docker\" cert_file and key_file are not a certificate and its key (Docker's cert.pem and key.pem): %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// pathless drops the path from a file error: the attribute named beside
// it says which file, and a key's path stays out of logs and plans.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// explain turns a failure to reach the engine into what to fix: which
// engine, and whether it refused pgha's certificate, presented one
// ca_file does not trust, or does not answer at all. Other errors pass
// through unchanged.
func (e *Engine) explain(err error) error {
	if err == nil {
		return nil
	}
	host := e.cli.DaemonHost()
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("the Docker engine at %s presented a certificate that ca_file of runtime \"docker\" does not trust: give the CA that signed the engine's --tlscert (Docker's ca.pem): %w", host, err)
	case errors.As(err, &hostErr):
		return fmt.Errorf("the Docker engine at %s presented a certificate for another host: issue its --tlscert for the address in host (its IP or name among the certificate's subject alternative names): %w", host, err)
	case strings.Contains(msg, "remote error: tls:"):
		return fmt.Errorf("the Docker engine at %s refused pgha's client certificate: cert_file and key_file of runtime \"docker\" must be a client certificate signed by the CA the engine trusts (its --tlscacert), with extended key usage clientAuth: %w", host, err)
	case errors.As(err, &recordErr) || strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("the Docker engine at %s does not speak TLS: run it with --tlsverify --tlscacert --tlscert --tlskey, or (on a network where that is acceptable) write insecure_tcp = true without TLS files: %w", host, err)
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("the Docker engine at %s does not answer: start dockerd there, or set runtime \"docker\" { host = ... } (DOCKER_HOST without it): %w", host, err)
	}
	return err
}

// Close releases the client.
func (e *Engine) Close() error { return e.cli.Close() }

// Ping checks the engine answers; its error says how to get one.
func (e *Engine) Ping(ctx context.Context) error {
	_, err := e.cli.Ping(ctx)
	return e.explain(err)
}

// Name is the resource name of a node ("redis" for the catalog).
func (e *Engine) Name(node string) string { return e.o.Prefix + node }

func (e *Engine) labels(node, role, config string) map[string]string {
	return map[string]string{LabelCluster: e.o.Cluster, LabelNode: node, LabelRole: role, LabelConfig: config}
}

// Container is what observation reports of one labelled container.
type Container struct {
	ID      string
	Name    string
	Node    string
	Running bool
	Image   string
	Config  string // the io.pgha.config label
	Role    string // the io.pgha.role label: postgres, redis, scratch, probe
}

// Inventory is every labelled resource of the cluster.
type Inventory struct {
	Containers map[string]Container // by node name ("redis" for the catalog)
	Volumes    map[string]bool      // by node name
	Network    bool
}

// Observe lists the cluster's labelled containers, volumes and network.
// Three list calls, whatever the cluster size.
func (e *Engine) Observe(ctx context.Context) (*Inventory, error) {
	inv := &Inventory{Containers: map[string]Container{}, Volumes: map[string]bool{}}
	f := filters.NewArgs(filters.Arg("label", LabelCluster+"="+e.o.Cluster))
	cs, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", e.explain(err))
	}
	for _, c := range cs {
		node := c.Labels[LabelNode]
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		inv.Containers[node] = Container{ID: c.ID, Name: name, Node: node, Running: c.State == "running", Image: c.Image, Config: c.Labels[LabelConfig], Role: c.Labels[LabelRole]}
	}
	vs, err := e.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	for _, v := range vs.Volumes {
		inv.Volumes[v.Labels[LabelNode]] = true
	}
	ns, err := e.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range ns {
		if n.Name == e.o.Network {
			inv.Network = true
		}
	}
	return inv, nil
}

// EnsureNetwork creates the cluster network when it is missing and says
// whether it did: containers attached to a removed network must be recreated.
func (e *Engine) EnsureNetwork(ctx context.Context) (bool, error) {
	f := filters.NewArgs(filters.Arg("name", e.o.Network))
	ns, err := e.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return false, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range ns {
		if n.Name == e.o.Network {
			if n.Labels[LabelCluster] != e.o.Cluster {
				return false, fmt.Errorf("network %s exists but is not pgha's (no %s=%s label); choose another network name", n.Name, LabelCluster, e.o.Cluster)
			}
			return false, nil
		}
	}
	_, err = e.cli.NetworkCreate(ctx, e.o.Network, network.CreateOptions{Driver: "bridge",
		Labels: map[string]string{LabelCluster: e.o.Cluster}})
	if err != nil {
		return false, fmt.Errorf("create network %s: %w", e.o.Network, err)
	}
	return true, nil
}

// EnsureVolume creates a node's volume when it is missing.
func (e *Engine) EnsureVolume(ctx context.Context, node string) error {
	name := e.Name(node)
	if v, err := e.cli.VolumeInspect(ctx, name); err == nil {
		if v.Labels[LabelCluster] != e.o.Cluster {
			return fmt.Errorf("volume %s exists but is not pgha's; remove or rename it", name)
		}
		return nil
	}
	_, err := e.cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Labels: e.labels(node, "postgres", "")})
	if err != nil {
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	return nil
}

// Spec describes a container to create.
type Spec struct {
	Node     string
	Role     string // "postgres" or "redis"
	Image    string
	Config   string // fingerprint label: a different one means replace
	Mount    string // where the node's volume is mounted ("" = no volume)
	Port     int    // container port to publish
	Bind     string // host address to publish on
	HostPort int
	Cmd      []string // default: sleep forever under docker's init
}

// EnsureContainer creates and starts the container described by s when
// it is missing, and starts it when it is stopped.
func (e *Engine) EnsureContainer(ctx context.Context, s Spec) error {
	name := e.Name(s.Node)
	info, err := e.cli.ContainerInspect(ctx, name)
	switch {
	case err == nil:
		if info.Config.Labels[LabelCluster] != e.o.Cluster {
			return fmt.Errorf("container %s exists but is not pgha's; pgha leaves it alone: remove or rename it", name)
		}
		if info.State.Running {
			return nil
		}
		if e.attached(ctx, info.NetworkSettings) {
			return e.start(ctx, name)
		}
		// Its network was removed and recreated: a stopped container keeps
		// pointing at the old one and can never start again. Recreate it;
		// the data is on the volume.
		if err := e.cli.ContainerRemove(ctx, name, container.RemoveOptions{Force: true}); err != nil {
			return fmt.Errorf("remove %s (attached to a removed network): %w", name, err)
		}
	case !client.IsErrNotFound(err):
		return fmt.Errorf("inspect %s: %w", name, err)
	}
	cmd := s.Cmd
	if len(cmd) == 0 {
		cmd = []string{"sleep", "infinity"}
	}
	port := nat.Port(fmt.Sprintf("%d/tcp", s.Port))
	init := true
	cfg := &container.Config{Image: s.Image, Cmd: cmd, Hostname: name, Labels: e.labels(s.Node, s.Role, s.Config),
		ExposedPorts: nat.PortSet{port: {}}, User: "root"}
	host := &container.HostConfig{Init: &init, NetworkMode: container.NetworkMode(e.o.Network),
		PortBindings:  nat.PortMap{port: {{HostIP: s.Bind, HostPort: fmt.Sprint(s.HostPort)}}},
		RestartPolicy: container.RestartPolicy{Name: "no"}}
	if s.Mount != "" {
		host.Binds = []string{e.Name(s.Node) + ":" + s.Mount}
	}
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{e.o.Network: {Aliases: []string{name}}}}
	if _, err := e.cli.ContainerCreate(ctx, cfg, host, netCfg, nil, name); err != nil {
		if client.IsErrNotFound(err) {
			return fmt.Errorf("create %s: image %s is not present on the engine (pull it, or build one: make image): %w", name, s.Image, err)
		}
		return fmt.Errorf("create %s: %w", name, err)
	}
	return e.start(ctx, name)
}

// ContainerRunning reports whether a node's container exists and runs,
// from the engine's inspect (no exec): false with no error when it is
// missing or stopped.
func (e *Engine) ContainerRunning(ctx context.Context, node string) (bool, error) {
	info, err := e.cli.ContainerInspect(ctx, e.Name(node))
	switch {
	case client.IsErrNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("inspect %s: %w", e.Name(node), err)
	}
	return info.State != nil && info.State.Running, nil
}

// attached reports whether a container is connected to the current
// cluster network (by ID, not by name).
func (e *Engine) attached(ctx context.Context, ns *container.NetworkSettings) bool {
	if ns == nil {
		return false
	}
	ep, ok := ns.Networks[e.o.Network]
	if !ok || ep == nil {
		return false
	}
	n, err := e.cli.NetworkInspect(ctx, e.o.Network, network.InspectOptions{})
	return err == nil && n.ID == ep.NetworkID
}

func (e *Engine) start(ctx context.Context, name string) error {
	if err := e.cli.ContainerStart(ctx, name, container.StartOptions{}); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// RemoveContainer force-removes a node's container (never its volume).
func (e *Engine) RemoveContainer(ctx context.Context, node string) error {
	err := e.cli.ContainerRemove(ctx, e.Name(node), container.RemoveOptions{Force: true})
	if err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("remove container %s: %w", e.Name(node), err)
	}
	return nil
}

// RemoveVolume deletes a node's volume: its data.
func (e *Engine) RemoveVolume(ctx context.Context, node string) error {
	err := e.cli.VolumeRemove(ctx, e.Name(node), true)
	if err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("remove volume %s: %w", e.Name(node), err)
	}
	return nil
}

// RemoveNetwork deletes the cluster network.
func (e *Engine) RemoveNetwork(ctx context.Context) error {
	err := e.cli.NetworkRemove(ctx, e.o.Network)
	if err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("remove network %s: %w", e.o.Network, err)
	}
	return nil
}

// ExecError is a command that ran and failed inside a container.
type ExecError struct {
	Cmd    string
	Code   int
	Output string
}

func (e *ExecError) Error() string {
	return fmt.Sprintf("%s exited with %d: %s", e.Cmd, e.Code, strings.TrimSpace(e.Output))
}

// Exec runs cmd in a node's container as user, with env and optional
// stdin, and returns its combined output.
func (e *Engine) Exec(ctx context.Context, node, user string, env []string, stdin []byte, cmd ...string) (string, error) {
	var in io.Reader
	if stdin != nil {
		in = bytes.NewReader(stdin)
	}
	return e.ExecIn(ctx, node, user, env, in, cmd...)
}

// ExecIn is Exec with standard input streamed from a reader (a restore
// sends gigabytes in).
func (e *Engine) ExecIn(ctx context.Context, node, user string, env []string, stdin io.Reader, cmd ...string) (string, error) {
	var out bytes.Buffer
	err := e.exec(ctx, node, user, env, stdin, &out, &out, cmd...)
	var ee *ExecError
	if errors.As(err, &ee) {
		ee.Output = out.String()
	}
	return out.String(), err
}

// ExecStream runs cmd in a node's container and streams its standard
// output to stdout as it comes (a base backup is gigabytes); it returns
// what the command wrote to standard error.
func (e *Engine) ExecStream(ctx context.Context, node, user string, env []string, stdout io.Writer, cmd ...string) (string, error) {
	var errb bytes.Buffer
	err := e.exec(ctx, node, user, env, nil, stdout, &errb, cmd...)
	var ee *ExecError
	if errors.As(err, &ee) {
		ee.Output = errb.String()
	}
	return errb.String(), err
}

func (e *Engine) exec(ctx context.Context, node, user string, env []string, stdin io.Reader, stdout, stderr io.Writer, cmd ...string) error {
	name := e.Name(node)
	id, err := e.cli.ContainerExecCreate(ctx, name, container.ExecOptions{User: user, Env: env, Cmd: cmd,
		AttachStdout: true, AttachStderr: true, AttachStdin: stdin != nil, WorkingDir: "/"})
	if err != nil {
		return fmt.Errorf("exec in %s: %w", name, err)
	}
	resp, err := e.cli.ContainerExecAttach(ctx, id.ID, container.ExecAttachOptions{})
	if err != nil {
		return fmt.Errorf("exec in %s: %w", name, err)
	}
	defer resp.Close()
	// A failure to read the input is ours and fails the exec; a failure to
	// write it means the command stopped reading, which its exit code says.
	src := &readErr{r: stdin}
	var sent chan struct{}
	if stdin != nil {
		sent = make(chan struct{})
		go func() {
			defer close(sent)
			_, _ = io.CopyBuffer(resp.Conn, src, make([]byte, 1<<20))
			_ = resp.CloseWrite()
		}()
	}
	if _, err := stdcopy.StdCopy(stdout, stderr, resp.Reader); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("exec in %s: %w", name, err)
	}
	if sent != nil {
		resp.Close() // unblocks a sender the command stopped reading from
		<-sent
		if src.err != nil {
			return fmt.Errorf("exec in %s: read input: %w", name, src.err)
		}
	}
	ins, err := e.cli.ContainerExecInspect(ctx, id.ID)
	if err != nil {
		return fmt.Errorf("exec in %s: %w", name, err)
	}
	if ins.ExitCode != 0 {
		return &ExecError{Cmd: cmd[0], Code: ins.ExitCode}
	}
	return nil
}

// CopyIn has the engine extract a tar stream into dir inside a node's
// container (the archive endpoint `docker cp` uses): the daemon writes the
// files itself, much faster than a tar reading an exec's standard input.
// dir must exist; files keep the owners the archive names.
func (e *Engine) CopyIn(ctx context.Context, node, dir string, tar io.Reader) error {
	if err := e.cli.CopyToContainer(ctx, e.Name(node), dir, tar, container.CopyToContainerOptions{}); err != nil {
		return fmt.Errorf("copy into %s:%s: %w", e.Name(node), dir, err)
	}
	return nil
}

type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		r.err = err
	}
	return n, err
}

// Exists reports whether a regular file exists at path in the node's
// container, through the engine's archive API (a HEAD request). It works
// on a stopped container, whose volume the engine mounts for the request,
// and starts nothing: about 20-100 ms where a probe container (Run) takes
// 1.7-1.9 s. A symbolic link counts as a file, as for sh's -f (which
// follows it; the engine does not say where it leads); a directory does
// not.
func (e *Engine) Exists(ctx context.Context, node, path string) (bool, error) {
	st, err := e.cli.ContainerStatPath(ctx, e.Name(node), path)
	switch {
	case client.IsErrNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("stat %s in %s: %w", path, e.Name(node), err)
	}
	return st.Mode.IsRegular() || st.Mode&os.ModeSymlink != 0, nil
}

// Run runs a command in a throwaway container of image with the node's
// volume mounted, for checks when the node's container is gone.
func (e *Engine) Run(ctx context.Context, image, node, mount string, cmd ...string) (string, error) {
	init := true
	c, err := e.cli.ContainerCreate(ctx, &container.Config{Image: image, Cmd: cmd, User: "root",
		Labels: map[string]string{LabelCluster: e.o.Cluster, LabelRole: "probe", LabelNode: "probe-" + node}},
		&container.HostConfig{Init: &init, Binds: []string{e.Name(node) + ":" + mount}, NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return "", fmt.Errorf("probe volume %s: %w", e.Name(node), err)
	}
	defer e.cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	if err := e.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return "", fmt.Errorf("probe volume %s: %w", e.Name(node), err)
	}
	waitC, errC := e.cli.ContainerWait(ctx, c.ID, container.WaitConditionNotRunning)
	var code int64
	select {
	case w := <-waitC:
		code = w.StatusCode
	case err := <-errC:
		return "", fmt.Errorf("probe volume %s: %w", e.Name(node), err)
	}
	logs, err := e.cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	var out bytes.Buffer
	if err == nil {
		_, _ = stdcopy.StdCopy(&out, &out, logs)
		logs.Close()
	}
	if code != 0 {
		return out.String(), &ExecError{Cmd: cmd[0], Code: int(code), Output: out.String()}
	}
	return out.String(), nil
}

// BinDir finds the PostgreSQL binaries in a node's container, once per
// image: on PATH (official images), else the newest /usr/lib/postgresql/*/bin
// (Debian packages), else pg_config --bindir.
func (e *Engine) BinDir(ctx context.Context, node, image string) (string, error) {
	e.mu.Lock()
	d, ok := e.binDirs[image]
	e.mu.Unlock()
	if ok {
		return d, nil
	}
	out, err := e.Exec(ctx, node, "root", nil, nil, "sh", "-c", FindBinScript)
	if err != nil {
		return "", fmt.Errorf("image %s has no PostgreSQL server binaries (pg_ctl): %w", image, err)
	}
	d = strings.TrimSpace(out)
	e.mu.Lock()
	e.binDirs[image] = d
	e.mu.Unlock()
	return d, nil
}

// FindBinScript prints the directory of the PostgreSQL server binaries.
const FindBinScript = `p=$(command -v pg_ctl 2>/dev/null) && { dirname "$p"; exit 0; }
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do [ -x "$d/pg_ctl" ] && { echo "$d"; exit 0; }; done
p=$(pg_config --bindir 2>/dev/null) && [ -x "$p/pg_ctl" ] && { echo "$p"; exit 0; }
exit 3`

// Address is a running container's IP address on the cluster network: where
// the other containers, and connections through its published port, reach it.
func (e *Engine) Address(ctx context.Context, node string) (string, error) {
	name := e.Name(node)
	info, err := e.cli.ContainerInspect(ctx, name)
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", name, err)
	}
	if info.NetworkSettings != nil {
		if ep := info.NetworkSettings.Networks[e.o.Network]; ep != nil && ep.IPAddress != "" {
			return ep.IPAddress, nil
		}
	}
	return "", fmt.Errorf("%s has no address on network %s", name, e.o.Network)
}
