package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// streamEvent is one line of `pgha -json`, read the way a program reading
// the documented format would (README, "JSON event stream").
type streamEvent struct {
	Level     string `json:"@level"`
	Message   string `json:"@message"`
	Module    string `json:"@module"`
	Timestamp string `json:"@timestamp"`
	Type      string `json:"type"`
	UI        string `json:"ui"`
	Change    *struct {
		Action struct{ Addr, Kind string } `json:"action"`
		Change string                      `json:"change"`
	} `json:"change"`
	Changes *streamChanges `json:"changes"`
	Hook    *struct {
		Action  struct{ Addr, Kind string } `json:"action"`
		Change  string                      `json:"change"`
		Status  string                      `json:"status"`
		Elapsed *float64                    `json:"elapsed_seconds"`
		Error   string                      `json:"error"`
	} `json:"hook"`
	Backup *struct {
		ID            string  `json:"id"`
		Type          string  `json:"type"`
		Node          string  `json:"node"`
		DatabaseBytes int64   `json:"database_bytes"`
		StoredBytes   int64   `json:"stored_bytes"`
		Elapsed       float64 `json:"elapsed_seconds"`
	} `json:"backup"`
	Outcome *struct {
		Operation    string        `json:"operation"`
		Status       string        `json:"status"`
		Changes      streamChanges `json:"changes"`
		Done         []string      `json:"done"`
		Failed       string        `json:"failed"`
		NotAttempted []string      `json:"not_attempted"`
		Error        string        `json:"error"`
	} `json:"outcome"`
	line string
}

type streamChanges struct {
	Add       int    `json:"add"`
	Change    int    `json:"change"`
	Destroy   int    `json:"destroy"`
	Operation string `json:"operation"`
}

// parseEvents parses EVERY line of stdout as one JSON object and checks
// the envelope each must have; action events must name their action and
// status, and their ends how long they took.
func parseEvents(t *testing.T, stdout string) []streamEvent {
	t.Helper()
	var evs []streamEvent
	for i, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		var e streamEvent
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			t.Fatalf("stdout line %d is not a JSON object (%v): %q", i+1, err, line)
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("stdout line %d: %v: %s", i+1, err, line)
		}
		e.line = line
		if _, err := time.Parse(time.RFC3339Nano, e.Timestamp); err != nil || e.Type == "" || e.Message == "" || e.Module != "pgha.ui" ||
			!slices.Contains([]string{"info", "warn", "error"}, e.Level) {
			t.Fatalf("line %d lacks @level, @message, @module, @timestamp or type: %s", i+1, line)
		}
		if strings.HasPrefix(e.Type, "apply_") && e.Type != "apply_begin" {
			if e.Hook == nil || e.Hook.Action.Addr == "" {
				t.Fatalf("line %d: an action event without its address: %s", i+1, line)
			}
			if e.Type != "apply_note" && e.Hook.Status == "" {
				t.Fatalf("line %d: an action event without its status: %s", i+1, line)
			}
			if (e.Type == "apply_complete" || e.Type == "apply_errored") && (e.Hook.Elapsed == nil || *e.Hook.Elapsed < 0) {
				t.Fatalf("line %d: the end of an action without elapsed_seconds: %s", i+1, line)
			}
		}
		evs = append(evs, e)
	}
	if len(evs) < 2 || evs[0].Type != "version" || evs[0].UI == "" {
		t.Fatalf("the stream does not start with its version:\n%s", stdout)
	}
	if last := evs[len(evs)-1]; last.Type != "outcome" || last.Outcome == nil {
		t.Fatalf("the stream does not end with its outcome:\n%s", stdout)
	}
	return evs
}

// planned returns the IDs of the planned_change events, in plan order.
func planned(evs []streamEvent) []string {
	var ids []string
	for _, e := range evs {
		if e.Type == "planned_change" {
			ids = append(ids, e.Change.Action.Addr)
		}
	}
	return ids
}

// ofType returns the addresses of the action events of one type.
func ofType(evs []streamEvent, typ string) []string {
	var ids []string
	for _, e := range evs {
		if e.Type == typ {
			ids = append(ids, e.Hook.Action.Addr)
		}
	}
	return ids
}

// TestLocalApplyJSON runs `pgha apply -auto-approve -json` on a real
// local cluster whose db2 port a listener of the test holds: PostgreSQL
// cannot bind it, so node.start[db2] fails, every time, after db1 and
// db2's clone are done. Every line of the stream is parsed; the failed
// action is reported errored with its cause, the actions after it are
// not attempted, and the stream ends with an error outcome. Once the
// port is free, a second apply -json converges and its counts agree.
func TestLocalApplyJSON(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "local", 2)

	if r := c.pgha("apply", "-json"); r.code == 0 || r.stdout != "" || !strings.Contains(r.stderr, "-json needs -auto-approve") {
		t.Fatalf("apply -json without -auto-approve must be refused before anything runs:\n%s", r)
	}

	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", c.port("db2")))
	if err != nil {
		t.Fatalf("take db2's port: %v", err)
	}
	go func() { // close what connects, so that observing db2 does not hang
		for {
			conn, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				conn.Close()
			}
		}
	}()
	r := c.pgha("apply", "-auto-approve", "-json")
	ln.Close()
	if r.code == 0 {
		t.Fatalf("apply with db2's port taken succeeded:\n%s", r)
	}
	evs := parseEvents(t, r.stdout)
	plan := planned(evs)
	const failed = "node.start[db2]"
	at := slices.Index(plan, failed)
	if at < 0 || !slices.Contains(plan, "catalog.record[cluster]") || slices.Index(plan, "catalog.record[cluster]") < at {
		t.Fatalf("the plan of a new cluster has no %s, or records the catalog before it: %v", failed, plan)
	}
	var errored []streamEvent
	for _, e := range evs {
		if e.Type == "apply_errored" {
			errored = append(errored, e)
		}
	}
	if len(errored) != 1 || errored[0].Hook.Action.Addr != failed || errored[0].Hook.Status != "errored" || errored[0].Level != "error" ||
		!strings.Contains(errored[0].Hook.Error, "Address already in use") {
		t.Fatalf("want one apply_errored for %s with PostgreSQL's bind error, got %d:\n%s", failed, len(errored), r.stdout)
	}
	// What ran is what was planned before the failed action, each started
	// and completed; nothing after it started.
	if got := ofType(evs, "apply_complete"); !slices.Equal(got, plan[:at]) {
		t.Fatalf("completed %v, want %v", got, plan[:at])
	}
	if got := ofType(evs, "apply_start"); !slices.Equal(got, plan[:at+1]) {
		t.Fatalf("started %v, want %v", got, plan[:at+1])
	}
	o := evs[len(evs)-1].Outcome
	if evs[len(evs)-1].Level != "error" || o.Status != "errored" || o.Operation != "apply" || o.Failed != failed ||
		!slices.Equal(o.Done, plan[:at]) || !slices.Equal(o.NotAttempted, plan[at+1:]) || !strings.Contains(o.Error, "Address already in use") {
		t.Fatalf("outcome: %s", evs[len(evs)-1].line)
	}
	if o.Changes.Add != at || o.Changes.Change != 0 || o.Changes.Destroy != 0 {
		t.Fatalf("outcome counts %+v, want %d added (a new cluster only creates)", o.Changes, at)
	}
	if !strings.Contains(r.stderr, "Error: "+failed) {
		t.Fatalf("stderr does not say what failed:\n%s", r)
	}

	// The port is free again: the next apply finishes the cluster.
	r = c.pgha("apply", "-auto-approve", "-json")
	if r.code != 0 {
		t.Fatalf("apply after freeing the port:\n%s", r)
	}
	evs = parseEvents(t, r.stdout)
	plan = planned(evs)
	if !slices.Contains(plan, failed) || !slices.Contains(plan, "catalog.record[cluster]") {
		t.Fatalf("the second plan lacks what was left: %v", plan)
	}
	if got := ofType(evs, "apply_complete"); !slices.Equal(got, plan) || len(ofType(evs, "apply_errored")) != 0 {
		t.Fatalf("completed %v, want every planned action %v", got, plan)
	}
	var summary *streamChanges
	var tally streamChanges
	for _, e := range evs {
		switch e.Type {
		case "change_summary":
			summary = e.Changes
		case "apply_complete":
			switch e.Hook.Change {
			case "create":
				tally.Add++
			case "update":
				tally.Change++
			case "delete":
				tally.Destroy++
			case "replace":
				tally.Add++
				tally.Destroy++
			}
		}
	}
	last := evs[len(evs)-1]
	o = last.Outcome
	if summary == nil || o.Status != "complete" || last.Level != "info" || !slices.Equal(o.Done, plan) || len(o.NotAttempted) != 0 || o.Failed != "" || o.Error != "" {
		t.Fatalf("outcome: %s", last.line)
	}
	tally.Operation, o.Changes.Operation = "apply", "apply"
	if *summary != tally || o.Changes != tally {
		t.Fatalf("counts disagree: plan %+v, completed actions %+v, outcome %+v", *summary, tally, o.Changes)
	}
	if want := fmt.Sprintf("Apply complete! Actions: %d added, %d changed, %d destroyed.", tally.Add, tally.Change, tally.Destroy); last.Message != want {
		t.Fatalf("outcome message %q, want %q", last.Message, want)
	}
	if r := c.pgha("plan", "-detailed-exitcode"); r.code != 0 || !strings.Contains(r.stdout, "No changes.") {
		t.Fatalf("the cluster did not converge:\n%s", r)
	}
	// A saved plan needs no -auto-approve (it was reviewed when saved);
	// with nothing to do the stream is still its version and outcome.
	c.mustPgha("plan", "-out", "converged.tfplan")
	r = c.mustPgha("apply", "-json", "converged.tfplan")
	evs = parseEvents(t, r.stdout)
	if o := evs[len(evs)-1].Outcome; len(evs) != 2 || o.Status != "complete" || len(o.Done) != 0 {
		t.Fatalf("a converged apply -json PLANFILE:\n%s", r.stdout)
	}

	// destroy -json: every planned action destroyed, the outcome says so.
	r = c.mustPgha("destroy", "-auto-approve", "-json")
	evs = parseEvents(t, r.stdout)
	plan = planned(evs)
	last = evs[len(evs)-1]
	if o := last.Outcome; len(plan) == 0 || o.Operation != "destroy" || o.Status != "complete" || !slices.Equal(o.Done, plan) ||
		!strings.HasPrefix(last.Message, "Destroy complete! Actions: ") {
		t.Fatalf("destroy -json:\n%s", r.stdout)
	}
}
