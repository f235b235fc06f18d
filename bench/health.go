package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// The health checks a load balancer asks (issue 12: at least 2,000
// requests/s with a p99 under 10 ms while the watcher runs): keep-alive
// clients hammer Patroni's paths on each node's health port of a
// three-node local cluster under `pgha watch`, then the same paths on
// Patroni's REST API (3.0, Debian's package, on etcd) in front of three
// PostgreSQL 15 nodes, one system at a time on the same two cores. pgha
// answers from the watcher's latest observation; Patroni's REST API asks
// PostgreSQL for each request.

// healthTarget is one URL the clients ask in turn, and the answer it must
// give on a healthy cluster (200 or 503).
type healthTarget struct {
	url  string
	want int
}

// healthRow is one system's measurement.
type healthRow struct {
	name               string
	target             bool // the row the acceptance's target applies to
	n, errs, wrong     int
	took               time.Duration
	p50, p99, max      time.Duration
	firstErr, firstBad string
	watcher            string // what the watcher logged meanwhile (pgha)
	err                error
}

func (r healthRow) rps() float64 { return float64(r.n) / r.took.Seconds() }

func runHealth(bin string, clients int, dur time.Duration) error {
	ctx, stop := signalContext()
	defer stop()
	reapPostgres(ctx)
	var rows []healthRow

	fmt.Println("health: pgha watch, three local nodes with health ports (TLS on, the default)...")
	rows = append(rows, func() healthRow {
		row := healthRow{name: "pgha watch health ports (HTTPS, from its observation)", target: true}
		c, err := startPghaAPI(ctx, bin, "local", "", "", true)
		if err != nil {
			row.err = err
			return row
		}
		defer c.close()
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(filepath.Join(c.dir, "data", "tls", "ca.crt"))
		if err != nil {
			row.err = err
			return row
		}
		pool.AppendCertsFromPEM(ca)
		var ts []healthTarget
		for i, p := range c.health {
			primary, replica := http.StatusServiceUnavailable, http.StatusOK
			if i == 0 {
				primary, replica = http.StatusOK, http.StatusServiceUnavailable
			}
			ts = append(ts, healthTarget{fmt.Sprintf("https://127.0.0.1:%d/primary", p), primary},
				healthTarget{fmt.Sprintf("https://127.0.0.1:%d/replica?lag=16MB", p), replica})
		}
		from := c.logSize()
		row = hammerRow(ctx, row, ts, &tls.Config{RootCAs: pool}, clients, dur)
		// The watcher went on checking under the load: anything it found
		// suspect or did meanwhile is reported (and misses the target).
		d := c.decisions(from)
		for _, m := range []string{"primary suspect", "primary lost", "failover", "restart in place", "heal", "apply"} {
			if d[m] > 0 {
				row.watcher += fmt.Sprintf("%d %q; ", d[m], m)
			}
		}
		return row
	}())

	fmt.Println("health: Patroni on etcd, three local PostgreSQL 15 nodes...")
	rows = append(rows, func() healthRow {
		row := healthRow{name: "baseline: Patroni REST API (HTTP, a query per request)"}
		if err := ensurePackages("patroni", "etcd-server", "etcd-client", "postgresql-15"); err != nil {
			row.err = err
			return row
		}
		c, err := startPatroni(ctx)
		if err != nil {
			row.err = err
			return row
		}
		defer c.close()
		lp, err := findPrimary(ctx, c)
		if err != nil {
			row.err = err
			return row
		}
		var ts []healthTarget
		for i, p := range c.rest {
			primary, replica := http.StatusServiceUnavailable, http.StatusOK
			if c.pg[i] == lp {
				primary, replica = http.StatusOK, http.StatusServiceUnavailable
			}
			ts = append(ts, healthTarget{fmt.Sprintf("http://127.0.0.1:%d/primary", p), primary},
				healthTarget{fmt.Sprintf("http://127.0.0.1:%d/replica?lag=16MB", p), replica})
		}
		return hammerRow(ctx, row, ts, nil, clients, dur)
	}())

	fmt.Printf("\n%d keep-alive clients for %s each, OPTIONS (as HAProxy checks) of /primary and /replica?lag=16MB on\n", clients, dur)
	fmt.Println("each node's health port in turn (6 URLs), on a healthy cluster whose agent runs; a wrong answer is a")
	fmt.Println("200 where 503 was due or the reverse (db1 primary, the others streaming standbys)")
	fmt.Println()
	fmt.Printf("%-56s %10s %9s %9s %9s %6s %6s  %s\n", "system", "requests/s", "p50", "p99", "max", "errors", "wrong", "target")
	for _, r := range rows {
		if r.err != nil {
			fmt.Printf("%-56s failed: %v\n", r.name, r.err)
			continue
		}
		target := "-"
		if r.target {
			verdict := "met"
			if r.rps() < 2000 || r.p99 >= 10*time.Millisecond || r.errs > 0 || r.wrong > 0 || r.watcher != "" {
				verdict = "MISSED"
			}
			target = ">= 2000/s, p99 < 10 ms, none wrong, a quiet watcher (" + verdict + ")"
		}
		fmt.Printf("%-56s %10.0f %9s %9s %9s %6d %6d  %s\n", r.name, r.rps(), ms(r.p50), ms(r.p99), ms(r.max), r.errs, r.wrong, target)
		if r.firstErr != "" {
			fmt.Printf("  first error: %s\n", r.firstErr)
		}
		if r.firstBad != "" {
			fmt.Printf("  first wrong answer: %s\n", r.firstBad)
		}
		if r.watcher != "" {
			fmt.Printf("  the watcher logged meanwhile: %s\n", r.watcher)
		}
	}
	for _, r := range rows {
		if r.err != nil {
			return fmt.Errorf("%s: %w", r.name, r.err)
		}
	}
	return nil
}

// hammerRow waits until every target answers as it should, warms up for
// a second, then measures.
func hammerRow(ctx context.Context, row healthRow, ts []healthTarget, tlsCfg *tls.Config, clients int, dur time.Duration) healthRow {
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	if err := waitFor(ctx, 60*time.Second, func() error {
		for _, t := range ts {
			req, _ := http.NewRequestWithContext(ctx, http.MethodOptions, t.url, nil)
			resp, err := cl.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != t.want {
				return fmt.Errorf("%s answers %d, want %d", t.url, resp.StatusCode, t.want)
			}
		}
		return nil
	}); err != nil {
		row.err = err
		return row
	}
	hammer(ctx, ts, tlsCfg, clients, time.Second)
	h := hammer(ctx, ts, tlsCfg, clients, dur)
	h.name, h.target, h.watcher = row.name, row.target, row.watcher
	return h
}

// hammer runs clients loops, each with its own keep-alive connections,
// asking the targets in turn for dur.
func hammer(ctx context.Context, ts []healthTarget, tlsCfg *tls.Config, clients int, dur time.Duration) healthRow {
	var mu sync.Mutex
	var r healthRow
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 2}}
			defer cl.CloseIdleConnections()
			mine := make([]time.Duration, 0, 1<<15)
			errs, wrong := 0, 0
			firstErr, firstBad := "", ""
			for j := i; time.Now().Before(deadline) && ctx.Err() == nil; j++ {
				t := ts[j%len(ts)]
				req, _ := http.NewRequestWithContext(ctx, http.MethodOptions, t.url, nil)
				s := time.Now()
				resp, err := cl.Do(req)
				if err != nil {
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(s))
				if resp.StatusCode != t.want {
					wrong++
					if firstBad == "" {
						firstBad = fmt.Sprintf("%s answered %d at %s: %s", t.url, resp.StatusCode, time.Now().Format("15:04:05.000"), bytes.Join(bytes.Fields(body), []byte(" ")))
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, mine...)
			r.errs += errs
			r.wrong += wrong
			if r.firstErr == "" {
				r.firstErr = firstErr
			}
			if r.firstBad == "" {
				r.firstBad = firstBad
			}
		}()
	}
	wg.Wait()
	r.took = time.Since(start)
	r.n = len(lat)
	if len(lat) > 0 {
		slices.Sort(lat)
		r.p50, r.p99, r.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	return r
}
