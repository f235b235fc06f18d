package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/plan"
)

const secretToken = "t0ken-Never-Shown"

func testServer(t *testing.T, token string) (*Server, *bytes.Buffer) {
	t.Helper()
	c := testCfg()
	c.API = &config.API{Listen: "127.0.0.1:0"}
	if token != "" {
		c.API.Token = config.NewSecret(token)
	}
	var logs bytes.Buffer
	hub := NewHub()
	hub.Now = func() time.Time { return t0 }
	log := slog.New(hub.LogHandler(slog.NewJSONHandler(&logs, nil)))
	s := New(c, hub, log, "test")
	hub.Publish(snapOf(healthy()))
	return s, &logs
}

func do(t *testing.T, h http.Handler, method, path, body, auth string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if strings.Contains(rec.Body.String(), secretToken) {
		t.Fatalf("%s %s answers with the token: %s", method, path, rec.Body)
	}
	return rec
}

func TestMutatingCallsNeedTheToken(t *testing.T) {
	s, logs := testServer(t, secretToken)
	h := s.Handler()
	for _, path := range []string{"/switchover", "/failover", "/failback"} {
		for _, auth := range []string{"", "Bearer wrong", "Basic " + secretToken, "Bearer " + secretToken + "x"} {
			rec := do(t, h, "POST", path, `{"to":"db2"}`, auth)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("POST %s with %q: %d, want 401", path, auth, rec.Code)
			}
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("POST %s: 401 without WWW-Authenticate", path)
			}
		}
	}
	// GET does not change anything, and is not a way around the check.
	if rec := do(t, h, "GET", "/failover", "", ""); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /failover: %d, want 405", rec.Code)
	}
	if strings.Contains(logs.String(), secretToken) {
		t.Fatalf("the log shows the token:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "api refused") {
		t.Fatalf("refused calls are not logged:\n%s", logs)
	}
}

func TestReadOnlyWithoutToken(t *testing.T) {
	s, _ := testServer(t, "")
	rec := do(t, s.Handler(), "POST", "/failover", "", "Bearer anything")
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "declares no api token") {
		t.Fatalf("POST without a declared token: %d %s", rec.Code, rec.Body)
	}
}

func TestBadBodies(t *testing.T) {
	s, _ := testServer(t, secretToken)
	h := s.Handler()
	for body, want := range map[string]string{
		`{"to": "db9"}`:  "not a node",
		`{"too": "db2"}`: "unknown field",
		`not json`:       "JSON object",
		``:               "say which node",
	} {
		rec := do(t, h, "POST", "/switchover", body, "Bearer "+secretToken)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("POST /switchover %q: %d %s, want 400 saying %q", body, rec.Code, rec.Body, want)
		}
	}
}

func TestNodeHandler(t *testing.T) {
	s, _ := testServer(t, secretToken)
	for _, tc := range []struct {
		node, method, path string
		want               int
	}{
		{"db1", "GET", "/primary", 200},
		{"db1", "OPTIONS", "/primary", 200}, // Patroni's haproxy.cfg checks with OPTIONS
		{"db1", "HEAD", "/primary", 200},
		{"db1", "GET", "/", 200}, // Patroni's / is /primary
		{"db2", "GET", "/", 503},
		{"db2", "OPTIONS", "/replica?lag=16MB", 200},
		{"db2", "GET", "/primary", 503},
	} {
		rec := do(t, s.NodeHandler(tc.node), tc.method, tc.path, "", "")
		if rec.Code != tc.want {
			t.Errorf("%s %s on %s's port: %d, want %d: %s", tc.method, tc.path, tc.node, rec.Code, tc.want, rec.Body)
		}
	}
	// The same checks on the API's port, by node.
	if rec := do(t, s.Handler(), "GET", "/nodes/db1/primary", "", ""); rec.Code != 200 {
		t.Errorf("/nodes/db1/primary: %d", rec.Code)
	}
	var body NodeHealth
	rec := do(t, s.Handler(), "GET", "/nodes/db2/primary", "", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 503 || body.Role != "standby" {
		t.Errorf("/nodes/db2/primary: %d %s", rec.Code, rec.Body)
	}
}

func TestStatusAndEvents(t *testing.T) {
	s, _ := testServer(t, secretToken)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, ":") {
		t.Fatalf("first line %q", line)
	}
	s.Log.Warn("primary lost", "node", "db1", "reason", "process gone")
	got := make(chan string, 1)
	go func() {
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			if strings.HasPrefix(line, "data: ") && strings.Contains(line, "primary lost") {
				got <- line
				return
			}
		}
	}()
	select {
	case line := <-got:
		var ev Event
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if ev.Type != "log" || ev.Level != "warn" || ev.Attrs["node"] != "db1" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the log record did not reach /events")
	}
	// GET / carries the status, the record and the event.
	r2, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	var st StatusBody
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 3 || st.Nodes[0].Role != "primary" || st.Record == nil || st.Record.Primary != "db1" {
		t.Fatalf("status: %s", b)
	}
	if len(st.Events) == 0 || st.Events[len(st.Events)-1].Message != "primary lost" {
		t.Fatalf("events: %+v", st.Events)
	}
}

func TestSwitchoverOnly(t *testing.T) {
	p := &plan.Plan{Actions: []plan.Action{
		{ID: "node.start[db3]", Kind: plan.NodeStart},
		{ID: "slot.create[db1/db2]", Kind: plan.SlotCreate},
		{ID: "switchover[db2]", Kind: plan.Switchover, DependsOn: []string{"slot.create[db1/db2]"}},
		{ID: "standby.rejoin[db1]", Kind: plan.StandbyRejoin, DependsOn: []string{"switchover[db2]"}},
		{ID: "backup.take[full]", Kind: plan.BackupTake},
		{ID: "catalog.record[cluster]", Kind: plan.CatalogRecord, DependsOn: []string{"standby.rejoin[db1]"}},
	}}
	var ids []string
	for _, a := range switchoverOnly(p).Actions {
		ids = append(ids, a.ID)
	}
	want := "slot.create[db1/db2] switchover[db2] standby.rejoin[db1] catalog.record[cluster]"
	if strings.Join(ids, " ") != want {
		t.Fatalf("kept %v, want %s", ids, want)
	}
	if got := switchoverOnly(&plan.Plan{Actions: p.Actions[:2]}); len(got.Actions) != 0 {
		t.Fatalf("no switchover planned, yet kept %v", got.Actions)
	}
}
