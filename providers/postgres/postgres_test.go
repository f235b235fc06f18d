package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

func endpoint(p *testenv.Postgres) Endpoint {
	return Endpoint{Host: p.Host, Port: p.Port, User: p.User, Password: p.Password}
}

func TestObservePrimary(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ep := endpoint(p)
	if err := CreateSlot(ctx, ep, "db2_slot"); err != nil {
		t.Fatal(err)
	}
	if err := CreateSlot(ctx, ep, "db2_slot"); err != nil {
		t.Fatalf("creating an existing slot again: %v", err)
	}
	n := &state.Node{}
	Observe(ctx, ep, n, map[string]string{"postgres": p.Password})
	if !n.Reachable || n.Error != "" {
		t.Fatalf("not reachable: %s", n.Error)
	}
	if n.Role() != state.RolePrimary || n.Timeline != 1 || n.SystemID == "" || n.CurrentLSN == 0 || n.ServerVersion < 100000 {
		t.Fatalf("identity: %+v", n)
	}
	if s := n.Settings["wal_level"]; s.Value != "replica" || s.Context != "postmaster" {
		t.Fatalf("wal_level: %+v", s)
	}
	if s := n.Settings["shared_buffers"]; s.Unit != "8kB" || s.VarType != "integer" {
		t.Fatalf("shared_buffers: %+v", s)
	}
	if sl := n.Slot("db2_slot"); sl == nil || sl.Type != "physical" || sl.Active || sl.RestartLSN == 0 {
		t.Fatalf("slot: %+v", n.Slots)
	}
	if r := n.Roles["postgres"]; !r.Superuser || !r.HasPassword || !r.PasswordMatches {
		t.Fatalf("superuser role: %+v", r)
	}
	if err := DropSlot(ctx, ep, "db2_slot"); err != nil {
		t.Fatal(err)
	}
	if err := DropSlot(ctx, ep, "db2_slot"); err != nil {
		t.Fatalf("dropping a missing slot: %v", err)
	}
	Observe(ctx, ep, n, nil)
	if len(n.Slots) != 0 {
		t.Fatalf("slot survived: %+v", n.Slots)
	}
}

func TestEnsureRole(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ep := endpoint(p)
	const first, second = "first-Pa55word", "second-Pa55word"
	for _, pw := range []string{first, second} {
		if err := EnsureRole(ctx, ep, "replicator", pw); err != nil {
			t.Fatal(err)
		}
		n := &state.Node{}
		Observe(ctx, ep, n, map[string]string{"replicator": pw})
		r := n.Roles["replicator"]
		if !r.CanLogin || !r.Replication || r.Superuser || !r.PasswordMatches {
			t.Fatalf("role after EnsureRole: %+v", r)
		}
		// The role can log in with that password: the verifier is right.
		if err := Exec(ctx, Endpoint{Host: p.Host, Port: p.Port, User: "replicator", Password: pw}, "SELECT 1"); err != nil {
			t.Fatalf("login with the new password: %v", err)
		}
	}
	n := &state.Node{}
	Observe(ctx, ep, n, map[string]string{"replicator": first})
	if n.Roles["replicator"].PasswordMatches {
		t.Fatal("the old password still matches")
	}
	err := Exec(ctx, Endpoint{Host: p.Host, Port: p.Port, User: "replicator", Password: first}, "SELECT 1")
	if err == nil {
		t.Fatal("login with the old password worked")
	}
	if strings.Contains(err.Error(), first) {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestObserveUnreachable(t *testing.T) {
	ep := Endpoint{Host: "127.0.0.1", Port: testenv.FreePort(t), User: "postgres", Password: "do-not-leak-me"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n := &state.Node{}
	Observe(ctx, ep, n, nil)
	if n.Reachable || n.Error == "" || n.Role() != state.RoleUnknown {
		t.Fatalf("closed port observed as %+v", n)
	}
	if strings.Contains(n.Error, "do-not-leak-me") {
		t.Fatalf("error leaks the password: %s", n.Error)
	}
}

func TestWrongPasswordDoesNotLeak(t *testing.T) {
	p := testenv.StartPostgres(t)
	ep := endpoint(p)
	ep.Password = "wrong-and-secret"
	n := &state.Node{}
	Observe(context.Background(), ep, n, nil)
	if n.Reachable || !strings.Contains(n.Error, "password authentication failed") || strings.Contains(n.Error, "wrong-and-secret") {
		t.Fatalf("wrong password: %+v", n.Error)
	}
}

func TestScramVerifier(t *testing.T) {
	// The format PostgreSQL stores; TestEnsureRole proves the server accepts it for login.
	salt := []byte("0123456789abcdef")
	v := ScramVerifier("pencil", salt, 4096)
	if !strings.HasPrefix(v, "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$") {
		t.Fatalf("verifier format: %s", v)
	}
	if !VerifierMatches(v, "pencil") || VerifierMatches(v, "pencil2") || VerifierMatches("md5abc", "pencil") || VerifierMatches("", "x") {
		t.Fatal("VerifierMatches is wrong")
	}
}

func TestRedactConninfo(t *testing.T) {
	got := redactConninfo("host=a port=1 user=r password=s3cret application_name=db2")
	if strings.Contains(got, "s3cret") || !strings.Contains(got, "password=(sensitive)") {
		t.Fatalf("got %q", got)
	}
}
