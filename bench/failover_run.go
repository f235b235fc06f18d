package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// runFailover measures every selected system in turn, one at a time (they
// share two cores), and prints one table. Ctrl-C stops the current
// measurement and removes everything the bench started.
func runFailover(bin string, runs int, tools []string, image string) error {
	ctx, stop := signalContext()
	defer stop()
	reapPostgres(ctx)
	want := func(t string) bool { return slices.Contains(tools, t) }
	if want("patroni") || want("pg_auto_failover") {
		if err := ensurePackages("patroni", "etcd-server", "etcd-client", "postgresql-15", "postgresql-15-auto-failover"); err != nil {
			return err
		}
	}
	notes := []string{
		"the client inserts increasing ids as fast as it can (1 s statement timeout, 1 s connect timeout, reconnecting on error); " +
			"the first write counted is the first acknowledged on a connection opened after the kill",
		"host crash (Patroni, pg_auto_failover): the node's agent and every PostgreSQL process of the node SIGKILLed at once; " +
			"pgha: the PostgreSQL instance alone (postmaster and children; on Docker too unless -docker-crash container, then docker kill), its watcher keeps running",
		"between runs the crashed node rejoins (Patroni: its agent restarted, a new clone if it cannot rejoin at use_pg_rewind's default off; " +
			"pg_auto_failover: its keeper restarted; pgha: its watcher) and the next run waits for two streaming standbys within 1 MB",
	}
	var rows []failoverRow
	measure := func(name string, start func() (haCluster, error), limit time.Duration) {
		if ctx.Err() != nil {
			return
		}
		c, err := start()
		if err != nil {
			fmt.Fprintln(os.Stderr, "failover:", err)
			rows = append(rows, failoverRow{tool: name, err: err})
			return
		}
		defer c.close()
		tool, rt, policy := c.label()
		fmt.Printf("failover: %s (%s, %s): %d runs...\n", tool, rt, policy, runs)
		rs, err := measureFailover(ctx, c, runs, limit)
		if err != nil {
			fmt.Fprintf(os.Stderr, "failover: %s %s: %v\n", tool, rt, err)
		}
		row := failoverRow{tool: tool, runtime: rt, policy: policy, runs: rs, err: err}
		if n, ok := c.(interface{ note() string }); ok {
			row.note = n.note()
		}
		rows = append(rows, row)
	}
	if want("patroni") {
		fmt.Println("failover: Patroni on etcd, three local PostgreSQL 15 nodes...")
		measure("Patroni", func() (haCluster, error) { return startPatroni(ctx) }, 120*time.Second)
	}
	if want("pg_auto_failover") {
		fmt.Println("failover: pg_auto_failover, a monitor and three local PostgreSQL 15 nodes...")
		measure("pg_auto_failover", func() (haCluster, error) { return startAutoFailover(ctx) }, 150*time.Second)
	}
	for _, rt := range []string{"local", "docker"} {
		// pgha-docker measures the default policy, then primary_crash =
		// "failover" when the default restarted in place;
		// pgha-docker:restart and pgha-docker:failover one of them.
		rows0 := []string{"", "failover"}
		switch {
		case want("pgha-" + rt):
		case want("pgha-"+rt+":restart") && want("pgha-"+rt+":failover"):
		case want("pgha-" + rt + ":restart"):
			rows0 = rows0[:1]
		case want("pgha-" + rt + ":failover"):
			rows0 = rows0[1:]
		default:
			continue
		}
		for _, crash := range rows0 {
			fmt.Printf("failover: pgha watch, three %s nodes...\n", rt)
			var c *pghaCluster
			measure("pgha watch", func() (haCluster, error) {
				var err error
				c, err = startPgha(ctx, bin, rt, image, crash)
				return c, err
			}, 60*time.Second)
			// A policy row for primary_crash = "failover" only when the
			// default restarted in place: a host crash fails over.
			if crash == "" && len(rows0) > 1 && (c == nil || !restartedInPlace(rows[len(rows)-1])) {
				break
			}
		}
	}
	fmt.Printf("\nload average at the end: %s\n", loadAverage())
	printFailoverTable(rows, runs, notes)
	return ctx.Err()
}

// signalContext is cancelled by Ctrl-C or SIGTERM, so that the bench
// stops measuring and removes what it started.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func restartedInPlace(r failoverRow) bool {
	for _, x := range r.runs {
		if !x.failover && !x.timedOut {
			return true
		}
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
