package api

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pki"
	"github.com/pgha/pgha/internal/pki/certstore"
	"github.com/pgha/pgha/plan"
	"github.com/pgha/pgha/providers/postgres"
	"github.com/pgha/pgha/reconcile"
)

// Server serves one cluster's API. Reload hands it an edited file: the
// token and everything read follow it; the listeners stay those it
// started with (a changed listen address or health_port needs a restart
// of `pgha watch`, which it logs).
type Server struct {
	Hub     *Hub
	Log     *slog.Logger
	Version string

	cfg     atomic.Pointer[config.Cluster]
	metrics *metrics
	// base is Serve's context: operations the API runs end with it (as
	// the CLI's do on SIGTERM), not with the client's request.
	base context.Context
	// opMu makes the API's own operations one at a time, so that the
	// second of two concurrent calls gets its 409 at once rather than
	// racing for the cluster lock.
	opMu sync.Mutex
}

// New returns a Server for c, publishing into hub.
func New(c *config.Cluster, hub *Hub, log *slog.Logger, version string) *Server {
	s := &Server{Hub: hub, Log: log, Version: version}
	s.cfg.Store(c)
	s.metrics = newMetrics(s)
	hub.mu.Lock()
	hub.iteration = s.metrics.observeIteration
	hub.mu.Unlock()
	return s
}

// Cfg is the cluster file the API follows now.
func (s *Server) Cfg() *config.Cluster { return s.cfg.Load() }

// Reload follows an edited cluster file.
func (s *Server) Reload(c *config.Cluster) {
	old := s.cfg.Load()
	if c.API == nil {
		s.Log.Warn("api listeners changed", "error", "the api block was removed; the API keeps serving until pgha watch restarts")
		cc := *c
		cc.API = old.API
		c = &cc
	}
	s.cfg.Store(c)
	if listeners(old) != listeners(c) {
		s.Log.Warn("api listeners changed", "error", "the API keeps listening where it started; restart pgha watch to listen where cluster.hcl now says")
	}
	s.Hub.Kick()
}

// listeners is a comparable summary of where c's API listens.
func listeners(c *config.Cluster) string {
	if c.API == nil {
		return ""
	}
	b := strings.Builder{}
	fmt.Fprintf(&b, "%s tls=%v", c.API.Listen, c.API.TLS)
	for _, n := range c.Nodes {
		if n.HealthPort != 0 {
			fmt.Fprintf(&b, " %s=%d", n.Name, n.HealthPort)
		}
	}
	return b.String()
}

// maxAge is how old an observation may be before checks stop trusting
// it: two check intervals, while the refresher keeps it under one.
func (s *Server) maxAge() time.Duration {
	return 2 * s.Cfg().Failover.CheckInterval
}

// Handler is the API's routes on api.listen.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.getStatus)
	mux.HandleFunc("GET /plan", s.getPlan)
	mux.HandleFunc("GET /history", s.getHistory)
	mux.HandleFunc("GET /backups", s.getBackups)
	mux.HandleFunc("GET /lag", s.getLag)
	mux.HandleFunc("GET /events", s.getEvents)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("POST /switchover", s.auth(s.postSwitchover))
	mux.HandleFunc("POST /failover", s.auth(s.postFailover))
	mux.HandleFunc("POST /failback", s.auth(s.postFailback))
	mux.HandleFunc("GET /nodes/{node}/{check}", s.nodeHealth(""))
	mux.HandleFunc("OPTIONS /nodes/{node}/{check}", s.nodeHealth(""))
	mux.Handle("GET /ui/", uiHandler())
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	return mux
}

// NodeHandler answers node's health checks at Patroni's paths (/primary,
// /replica?lag=16MB, ...), for its health_port. GET, HEAD and OPTIONS
// are answered alike: Patroni's haproxy.cfg checks with OPTIONS.
func (s *Server) NodeHandler(node string) http.Handler {
	mux := http.NewServeMux()
	h := s.nodeHealth(node)
	mux.HandleFunc("GET /{check}", h)
	mux.HandleFunc("OPTIONS /{check}", h)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		// Patroni's GET / is /primary.
		r.SetPathValue("check", "primary")
		h(w, r)
	})
	return mux
}

func (s *Server) nodeHealth(node string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := node
		if n == "" {
			n = r.PathValue("node")
		}
		code, body := Health(r.PathValue("check"), r.URL.Query(), s.Hub.Latest(), n, s.Hub.now(), s.maxAge(), s.Hub.Lost(n))
		writeJSON(w, code, body)
	}
}

// auth admits a call that changes the cluster only with the api token as
// a bearer token. Without a token declared the API reads only.
func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := s.Cfg().API.Token
		if !tok.IsSet() {
			writeError(w, http.StatusForbidden, "this API reads only: cluster.hcl declares no api token (token = file(\"./.secrets/api\"))")
			return
		}
		// The scheme is case-insensitive (RFC 7235), the token is not.
		h := r.Header.Get("Authorization")
		ok := len(h) > 7 && strings.EqualFold(h[:7], "Bearer ")
		got := ""
		if ok {
			got = h[7:]
		}
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(tok.Reveal())) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pgha"`)
			writeError(w, http.StatusUnauthorized, "this call changes the cluster: send the api token as Authorization: Bearer <token>")
			s.Log.Warn("api refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", "missing or wrong token")
			return
		}
		next(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// Serve listens on api.listen and on every node's health_port until ctx
// ends, and keeps the Hub's observation fresh meanwhile. It returns once
// every listener is open (or one failed), serving in the background;
// done is closed when everything stopped.
func (s *Server) Serve(ctx context.Context) (done <-chan struct{}, err error) {
	c := s.Cfg()
	if c.API == nil {
		return nil, errors.New("cluster.hcl has no api block")
	}
	s.base = ctx
	var tlsCfg *tls.Config
	if c.API.TLS {
		if tlsCfg, err = serverTLS(c); err != nil {
			return nil, err
		}
	}
	type listener struct {
		addr string
		h    http.Handler
		what string
	}
	ls := []listener{{c.API.Listen, s.Handler(), "api"}}
	for _, n := range c.Nodes {
		if n.HealthPort != 0 {
			ls = append(ls, listener{net.JoinHostPort(c.API.Host(), strconv.Itoa(n.HealthPort)), s.NodeHandler(n.Name), "health " + n.Name})
		}
	}
	var servers []*http.Server
	var nls []net.Listener
	for _, l := range ls {
		nl, err := net.Listen("tcp", l.addr)
		if err != nil {
			for _, o := range nls {
				o.Close()
			}
			return nil, fmt.Errorf("api: listen on %s (%s): %w", l.addr, l.what, err)
		}
		if tlsCfg != nil {
			nl = tls.NewListener(nl, tlsCfg)
		}
		nls = append(nls, nl)
		servers = append(servers, &http.Server{Handler: l.h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug)})
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	s.Log.Info("api listening", "url", scheme+"://"+c.API.Listen+"/", "ui", scheme+"://"+c.API.Listen+"/ui/", "health_ports", len(ls)-1, "tls", tlsCfg != nil)
	ch := make(chan struct{})
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = srv.Serve(nls[i])
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.refresh(ctx)
	}()
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.sentinel(ctx, n.Name)
		}()
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, srv := range servers {
			_ = srv.Shutdown(sctx)
		}
		// An operation the API runs stops at its next safe point once ctx
		// ended; the watcher exits after it, not in the middle of it.
		s.opMu.Lock()
		s.opMu.Unlock() //nolint:staticcheck // waiting for the running operation is the point
		wg.Wait()
		close(ch)
	}()
	return ch, nil
}

// serverTLS is the API's certificate from the cluster's store, issued by
// the cluster CA when missing (the plan renews it with the others).
func serverTLS(c *config.Cluster) (*tls.Config, error) {
	st := certstore.Store{Dir: c.TLS.Dir}
	if _, err := os.Stat(st.CertPath(config.CertAPI)); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(st.KeyPath(pki.CA)); err != nil {
			return nil, fmt.Errorf("api tls: %s holds no CA key to issue the API's certificate; run pgha apply first (it creates the cluster CA), or set api { tls = false }", c.TLS.Dir)
		}
		if err := st.Issue(config.CertAPI, plan.CertRequest(c, config.CertAPI), time.Now()); err != nil {
			return nil, fmt.Errorf("api tls: issue the API's certificate: %w", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(st.CertPath(config.CertAPI), st.KeyPath(config.CertAPI))
	if err != nil {
		return nil, fmt.Errorf("api tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// refresh keeps the Hub's observation younger than one check interval:
// when the watcher's is older than half of one (it is busy running an
// operation, a clone can take minutes), the API observes by itself,
// quickly and through an Env of its own. Kick asks for one at once.
func (s *Server) refresh(ctx context.Context) {
	var envs ownEnv
	defer envs.close()
	for {
		c := s.Cfg()
		iv := c.Failover.CheckInterval
		t := time.NewTimer(max(iv/4, 50*time.Millisecond))
		kicked := false
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.Hub.kick:
			kicked = true
		case <-t.C:
		}
		t.Stop()
		if snap := s.Hub.Latest(); !kicked && snap != nil && s.Hub.now().Sub(snap.At) < iv/2 {
			continue
		}
		if err := envs.follow(c); err != nil {
			s.Log.Warn("api observe", "error", err.Error())
			continue
		}
		env := envs.env
		if s.Hub.WatcherObserving() {
			continue // its observation is as fresh as this one would be
		}
		started := s.Hub.now()
		st := env.ObserveWith(ctx, reconcile.ObserveOptions{Quick: true})
		if ctx.Err() != nil {
			return
		}
		s.Hub.Publish(&Snapshot{Cfg: c, State: st, At: st.ObservedAt, Own: true, started: started})
	}
}

// sentinel keeps an idle connection to node's PostgreSQL (see
// postgres.Sentinel) and tells the Hub the moment it ends, so that the
// node's health checks say 503 at once rather than at the next
// observation: a killed primary's /primary answered 503 after 0.4-1.2 s
// on Docker before (the observations there take 0.5-1 s under load).
// While the node does not take connections, it tries again every 200
// ms; the observations say the rest.
func (s *Server) sentinel(ctx context.Context, node string) {
	var envs ownEnv
	defer envs.close()
	for ctx.Err() == nil {
		c := s.Cfg()
		if err := envs.follow(c); err != nil {
			sleep(ctx, time.Second)
			continue
		}
		ep, ok := envs.env.Endpoint(node)
		if !ok {
			return // removed from the file; the listener reports it
		}
		cctx, cancel := context.WithTimeout(ctx, reconcile.ObserveTimeout)
		lost, closeConn, err := postgres.Sentinel(cctx, ep)
		cancel()
		if err != nil {
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		select {
		case <-ctx.Done():
			closeConn()
			return
		case err := <-lost:
			closeConn()
			s.Hub.NodeLost(node, s.Hub.now(), err.Error())
			s.Log.Debug("sentinel", "node", node, "error", err.Error())
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ownEnv is a loop's Env of the cluster file the API follows now, opened
// again when the file changes.
type ownEnv struct{ env *reconcile.Env }

func (o *ownEnv) follow(c *config.Cluster) error {
	if o.env != nil && o.env.Cfg.Hash == c.Hash {
		return nil
	}
	o.close()
	env, err := reconcile.Open(c)
	if err != nil {
		return err
	}
	o.env = env
	return nil
}

func (o *ownEnv) close() {
	if o.env != nil {
		o.env.Close()
		o.env = nil
	}
}
