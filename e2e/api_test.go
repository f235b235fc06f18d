package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLocalAPI drives a cluster through the API of `pgha watch` the way
// an operator's script or the dashboard does: the health checks answer
// per node; a call without the token changes nothing; a switchover and
// a failback run with the CLI's engine and lock (409 while it is held);
// the token shows in no answer and no log line.
func TestLocalAPI(t *testing.T)  { apiScenario(t, "local") }
func TestDockerAPI(t *testing.T) { apiScenario(t, "docker") }

func apiScenario(t *testing.T, rt string) {
	c := newCluster(t, rt, 3)
	a := c.enableAPI(true)
	c.mustPgha("apply", "-auto-approve")
	a.refreshCA()
	w := c.startWatch("w1")
	a.waitUp(t, 20*time.Second)
	ctx := context.Background()

	wantHealth := func(node, path string, want int) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			code, b := a.do(t, "GET", a.healthURL(node, path), "", false)
			if code != want {
				return &httpErr{node + " " + path, code, want, string(b)}
			}
			return nil
		})
	}
	wantHealth("db1", "/primary", 200)
	wantHealth("db2", "/primary", 503)
	wantHealth("db2", "/replica?lag=16MB", 200)
	wantHealth("db1", "/replica", 503)
	wantHealth("db3", "/read-only", 200)

	t.Run("POST without the token changes nothing", func(t *testing.T) {
		before := catalogRecord(ctx, t, c)
		for _, path := range []string{"/switchover", "/failover", "/failback"} {
			code, b := a.do(t, "POST", a.url(path), `{"to":"db2","force":true}`, false)
			if code != http.StatusUnauthorized {
				t.Fatalf("POST %s without the token: %d %s", path, code, b)
			}
		}
		time.Sleep(2 * time.Second) // a call that slipped through would be under way
		after := catalogRecord(ctx, t, c)
		if after.Generation != before.Generation || after.Primary != "db1" || !c.writable(ctx, "db1") {
			t.Fatalf("the cluster changed: record %+v -> %+v", before, after)
		}
	})

	t.Run("409 while the cluster lock is held", func(t *testing.T) {
		env := c.env()
		defer env.Close()
		lease, err := env.Lock(ctx, "test", 0, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		code, b := a.do(t, "POST", a.url("/switchover"), `{"to":"db2"}`, true)
		_ = lease.Release(ctx)
		if code != http.StatusConflict || !strings.Contains(string(b), "lock") {
			t.Fatalf("POST /switchover with the lock held: %d %s", code, b)
		}
		if rec := catalogRecord(ctx, t, c); rec.Primary != "db1" {
			t.Fatalf("the refused switchover changed the primary: %+v", rec)
		}
	})

	t.Run("switchover to db2, then failback", func(t *testing.T) {
		var preview struct {
			Actions []struct {
				ID string `json:"id"`
			} `json:"actions"`
		}
		a.getJSON(t, "/plan?operation=switchover&to=db2", &preview)
		if len(preview.Actions) == 0 || preview.Actions[0].ID != "switchover[db2]" {
			t.Fatalf("switchover preview: %+v", preview)
		}
		res := post(t, a, "/switchover", `{"to":"db2"}`)
		if res.Outcome != "complete" || !strings.Contains(string(res.Plan), "switchover[db2]") {
			t.Fatalf("switchover: %+v", res)
		}
		if rec := catalogRecord(ctx, t, c); rec.Primary != "db2" {
			t.Fatalf("record after the switchover: %+v", rec)
		}
		wantHealth("db2", "/primary", 200)
		wantHealth("db1", "/primary", 503)
		// The switchover made db1 follow db2; the watcher keeps db2
		// (failback = manual).
		c.streamsFrom(ctx, t, "db1", "db2", 60*time.Second)

		res = post(t, a, "/failback", ``)
		if res.Outcome != "complete" {
			t.Fatalf("failback: %+v", res)
		}
		if rec := catalogRecord(ctx, t, c); rec.Primary != "db1" {
			t.Fatalf("record after the failback: %+v", rec)
		}
		wantHealth("db1", "/primary", 200)
		wantHealth("db2", "/primary", 503)
	})

	t.Run("status carries the record, the leader and the events", func(t *testing.T) {
		var st struct {
			Nodes []struct {
				Name, Role string
			} `json:"nodes"`
			Record *struct {
				Primary    string `json:"primary"`
				Generation int64  `json:"generation"`
			} `json:"record"`
			Catalog struct {
				Leader *struct{ PID int } `json:"leader"`
			} `json:"catalog"`
			Leading bool `json:"leading"`
			Events  []struct {
				Type, Message string
			} `json:"events"`
		}
		a.getJSON(t, "/", &st)
		if len(st.Nodes) != 3 || st.Record == nil || st.Record.Primary != "db1" || !st.Leading || st.Catalog.Leader == nil {
			t.Fatalf("status: %+v", st)
		}
		var sawOp bool
		for _, ev := range st.Events {
			sawOp = sawOp || (ev.Type == "operation" && strings.HasPrefix(ev.Message, "failback"))
		}
		if !sawOp {
			t.Fatalf("no failback among the events: %+v", st.Events)
		}
	})
	w.stop(t)
}

type httpErr struct {
	what       string
	code, want int
	body       string
}

func (e *httpErr) Error() string {
	return e.what + ": " + http.StatusText(e.code) + ", want " + http.StatusText(e.want) + ": " + e.body
}

type opResult struct {
	Operation string          `json:"operation"`
	Outcome   string          `json:"outcome"`
	Error     string          `json:"error"`
	Plan      json.RawMessage `json:"plan"`
}

// post runs an operation through the API with the token.
// post runs an operation through the API as a client should: a 409
// because the cluster lock is held (the watcher healing what the last
// operation left, a few seconds at most) is asked again, for up to 30 s;
// anything else but a 200 fails t.
func post(t *testing.T, a *api, path, body string) opResult {
	t.Helper()
	var code int
	var b []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		code, b = a.do(t, "POST", a.url(path), body, true)
		if code != http.StatusConflict || !strings.Contains(string(b), "the cluster lock is held") || time.Now().After(deadline) {
			break
		}
		t.Logf("POST %s: 409, the cluster lock is held; asked again", path)
	}
	var r opResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("POST %s: %d %s", path, code, b)
	}
	if code != http.StatusOK {
		t.Fatalf("POST %s: %d %+v", path, code, r)
	}
	return r
}
