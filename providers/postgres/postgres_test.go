package postgres

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

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
	if a := n.Archiver; a == nil || a.Mode != "off" || a.FailedCount != 0 || a.Failing() {
		t.Fatalf("archiver of a server without archiving: %+v", a)
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
	for in, want := range map[string]string{
		"host=a port=1 user=r password=s3cret application_name=db2": "host=a port=1 user=r password=(sensitive) application_name=db2",
		"host=a password = 's3 cret' user=r":                        "host=a password=(sensitive) user=r",
		`password='it\'s s3cret' host=a`:                            "password=(sensitive) host=a",
		`password=s3\ cret host=a`:                                  "password=(sensitive) host=a",
		"host=a password='s3cret":                                   "(sensitive)",
		"postgresql://r:s3cret@a:1/db?application_name=x":           "postgresql://r:(sensitive)@a:1/db?application_name=x",
		"postgres://r@a/db?password=s3cret&sslmode=disable":         "postgres://r@a/db?password=(sensitive)&sslmode=disable",
		"": "",
	} {
		if got := redactConninfo(in); got != want || strings.Contains(got, "s3") {
			t.Errorf("redactConninfo(%q) = %q, want %q", in, got, want)
		}
	}
}

// trickyPasswords are passwords whose SASLprep is not the identity, each
// for a reason PostgreSQL's pg_saslprep (src/common/saslprep.c) has.
var trickyPasswords = []string{
	"plain-ASCII pw",
	"pässwörd",                    // NFC already
	"pa\u0308sswo\u0308rd",        // decomposed: NFKC composes
	"\ufb01le-\uff30ass\u2163",    // ligature, fullwidth, roman numeral
	"no\u00a0break\u3000space",    // non-ASCII spaces become spaces
	"soft\u00adhyphen\u200b",      // mapped to nothing / to a space
	"\u00e9\u0007bell",            // prohibited control: used raw
	"\u05e9\u05dc\u05d5\u05dd",    // right-to-left only
	"abc\u05e9\u05dc\u05d5\u05dd", // mixed directions: used raw
	"smile\U0001F600\ufb01",       // unassigned in Unicode 3.2: used raw
	"\u00ad",                      // empty after mapping: used raw
	"zero\u200bwidth",             // C.1.2 before B.1: a space, not nothing
	"mongolian\u1806todo",         // B.1: mapped to nothing
	"e\u0340tone",                 // prohibited before NFKC (which makes it U+0300): used raw
	"\u05e9\u2116\u05dd",          // bidi checked before NFKC (which makes it "No")
	"a\u2c7csub",                  // unassigned in 3.2 though NFKC now maps it to "j": used raw
	"\xff\xfe bytes",              // invalid UTF-8: used raw
}

// TestScramVerifierMatchesServer lets PostgreSQL hash plaintext passwords
// itself (only a test sends one) and checks that the local computation,
// SASLprep included, agrees: ASCII, NFKC-changed, mapped and prohibited
// (used raw) passwords.
func TestScramVerifierMatchesServer(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := connect(ctx, endpoint(p))
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, "CREATE ROLE probe LOGIN"); err != nil {
		t.Fatal(err)
	}
	for _, pw := range trickyPasswords {
		if !utf8.ValidString(pw) {
			continue // the server takes only UTF-8 text; TestScramVerifierLibpqLogin covers it
		}
		if _, err := conn.Exec(ctx, "ALTER ROLE probe PASSWORD $1", pw); err != nil {
			t.Fatalf("set password %q: %v", pw, err)
		}
		var stored string
		if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'probe'").Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !VerifierMatches(stored, pw) {
			t.Errorf("password %+q: the server's verifier does not match the local computation", pw)
		}
		if VerifierMatches(stored, pw+"x") {
			t.Errorf("password %+q: a different password matches", pw)
		}
	}
}

// TestScramVerifierLibpqLogin sets each tricky password as the verifier
// pgha computes (EnsureRole) and logs in with libpq (psql), the client a
// standby's WAL receiver uses: libpq runs pg_saslprep on its side, so a
// login proves both sides prepared the password alike. A wrong password
// must still fail, or the check would prove nothing.
func TestScramVerifierLibpqLogin(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	psql := filepath.Join(p.BinDir, "psql")
	login := func(pw string) (string, error) {
		cmd := exec.CommandContext(ctx, psql, "-X", "-At", "-c", "SELECT current_user",
			fmt.Sprintf("host=%s port=%d user=probe dbname=postgres sslmode=disable connect_timeout=10", p.Host, p.Port))
		cmd.Env = append(os.Environ(), "PGPASSWORD="+pw)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if _, err := os.Stat(psql); err != nil {
		t.Fatalf("psql (libpq) is needed next to the server binaries: %v; install postgresql-client-15", err)
	}
	for _, pw := range trickyPasswords {
		if err := EnsureRole(ctx, endpoint(p), "probe", pw); err != nil {
			t.Fatal(err)
		}
		if out, err := login(pw); err != nil || out != "probe" {
			t.Errorf("password %+q: libpq login with pgha's verifier: %v: %s", pw, err, out)
		}
		if out, err := login(pw + "x"); err == nil || !strings.Contains(out, "password authentication failed") {
			t.Errorf("password %+q: a different password: %v: %s", pw, err, out)
		}
	}
}

func TestEnsureRoleQuotesNames(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const name, pw = `we"ird role; DROP ROLE postgres`, "pw-for-weird"
	if err := EnsureRole(ctx, endpoint(p), name, pw); err != nil {
		t.Fatal(err)
	}
	n := &state.Node{}
	Observe(ctx, endpoint(p), n, map[string]string{name: pw, "postgres": ""})
	if r, ok := n.Roles[name]; !ok || !r.PasswordMatches || !r.CanLogin {
		t.Fatalf("roles: %+v", n.Roles)
	}
	if r := n.Roles["postgres"]; !r.Superuser || r.PasswordMatches {
		t.Fatalf("postgres role (password not checked): %+v", r)
	}
}

func TestErrorsDoNotLeakSecrets(t *testing.T) {
	const epSecret, roleSecret = "endpoint-secret-pw", "role-secret-pw"
	ep := Endpoint{Host: "127.0.0.1", Port: testenv.FreePort(t), User: "postgres", Password: epSecret}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for name, err := range map[string]error{
		"EnsureRole": EnsureRole(ctx, ep, "replicator", roleSecret),
		"CreateSlot": CreateSlot(ctx, ep, "s"),
		"DropSlot":   DropSlot(ctx, ep, "s"),
		"Reload":     Reload(ctx, ep),
		"Exec":       Exec(ctx, ep, "SELECT 1"),
		"Heartbeat":  Heartbeat(ctx, ep, time.Second),
	} {
		if err == nil {
			t.Errorf("%s on a closed port: no error", name)
			continue
		}
		if strings.Contains(err.Error(), epSecret) || strings.Contains(err.Error(), roleSecret) {
			t.Errorf("%s error leaks a password: %v", name, err)
		}
	}
}

// TestStandby clones a standby through a slot and checks what both sides
// report, that an active slot is not dropped, and that the timeline moves
// on promotion.
func TestStandby(t *testing.T) {
	p := testenv.StartPostgres(t)
	s := testenv.StartStandby(t, p, "db2", "db2_slot")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pep, sep := endpoint(p), endpoint(s)
	if err := WaitStreaming(ctx, sep); err != nil {
		t.Fatal(err)
	}

	primary, standby := &state.Node{}, &state.Node{}
	Observe(ctx, pep, primary, nil)
	Observe(ctx, sep, standby, nil)
	if !standby.Reachable || standby.Role() != state.RoleStandby || standby.SystemID != primary.SystemID || standby.Timeline != 1 {
		t.Fatalf("standby identity: %+v (primary system id %s)", standby, primary.SystemID)
	}
	if standby.CurrentLSN != 0 || standby.ReceiveLSN == 0 || standby.ReplayLSN == 0 {
		t.Fatalf("standby LSNs: current %s receive %s replay %s", standby.CurrentLSN, standby.ReceiveLSN, standby.ReplayLSN)
	}
	if u := standby.Upstream; u == nil || u.Status != "streaming" || u.Host != p.Host || u.Port != p.Port || u.Slot != "db2_slot" {
		t.Fatalf("upstream: %+v", u)
	}
	ci := standby.Settings["primary_conninfo"].Value
	// pg_basebackup -R wrote the password it used into primary_conninfo.
	if strings.Contains(ci, p.Password) || !strings.Contains(ci, "password=(sensitive)") || !strings.Contains(ci, "user=postgres") {
		t.Fatalf("primary_conninfo not redacted: %q", ci)
	}
	if primary.Upstream != nil || primary.ReceiveLSN != 0 || primary.ReplayAge != 0 {
		t.Fatalf("primary has standby facts: %+v", primary)
	}
	r := primary.Replica("db2")
	if r == nil || r.State != "streaming" || r.SentLSN == 0 || r.ClientAddr != "127.0.0.1" {
		t.Fatalf("replicas: %+v", primary.Replicas)
	}
	sl := primary.Slot("db2_slot")
	if sl == nil || !sl.Active || sl.ActivePID == 0 {
		t.Fatalf("slot: %+v", primary.Slots)
	}
	err := DropSlot(ctx, pep, "db2_slot")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(sl.ActivePID)) {
		t.Fatalf("dropping an active slot: %v", err)
	}

	// A write on the primary is replayed; the replay age is then known.
	if err := Exec(ctx, pep, "CREATE TABLE t AS SELECT 1 AS x"); err != nil {
		t.Fatal(err)
	}
	Observe(ctx, pep, primary, nil)
	for standby.ReplayLSN < primary.CurrentLSN {
		if ctx.Err() != nil {
			t.Fatalf("standby did not replay to %s: %+v", primary.CurrentLSN, standby)
		}
		time.Sleep(20 * time.Millisecond)
		Observe(ctx, sep, standby, nil)
	}
	if standby.ReplayAge <= 0 || standby.ReplayAge > time.Minute {
		t.Fatalf("replay age: %s", standby.ReplayAge)
	}

	if err := Exec(ctx, sep, "SELECT pg_promote()"); err != nil {
		t.Fatal(err)
	}
	Observe(ctx, sep, standby, nil)
	if standby.Role() != state.RolePrimary || standby.Timeline != 2 || standby.CurrentLSN == 0 ||
		standby.ReceiveLSN != 0 || standby.ReplayAge != 0 || standby.Upstream != nil {
		t.Fatalf("promoted standby: %+v", standby)
	}
}

// BenchmarkObserve measures one full observation of a primary (connect,
// SCRAM, the batch, two password checks): `pgha plan` runs three at once.
func BenchmarkObserve(b *testing.B) {
	p := testenv.StartPostgres(b)
	ep := endpoint(p)
	roles := map[string]string{"postgres": p.Password, "replicator": "x"}
	ctx := context.Background()
	for b.Loop() {
		n := &state.Node{}
		Observe(ctx, ep, n, roles)
		if !n.Reachable {
			b.Fatal(n.Error)
		}
	}
}

// TestStandbyLastMessageAge: the standby reports how long ago its WAL
// receiver last heard from the primary, computed on the standby. It is
// small right after a write and grows, with the receiver still saying
// "streaming", while the primary's WAL sender is paused (SIGSTOP): what
// the health detector reads to tell a primary that stopped talking from
// a blip between pgha and the primary.
func TestStandbyLastMessageAge(t *testing.T) {
	p := testenv.StartPostgres(t)
	s := testenv.StartStandby(t, p, "db2", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pep, sep := endpoint(p), endpoint(s)
	if err := WaitStreaming(ctx, sep); err != nil {
		t.Fatal(err)
	}
	if err := Exec(ctx, pep, "CREATE TABLE t AS SELECT 1 AS x"); err != nil {
		t.Fatal(err)
	}
	primary, standby := &state.Node{}, &state.Node{}
	Observe(ctx, pep, primary, nil)
	if err := WaitReplayed(ctx, sep, primary.CurrentLSN); err != nil {
		t.Fatal(err)
	}
	Observe(ctx, sep, standby, nil)
	u := standby.Upstream
	if u == nil || u.Status != "streaming" || u.LastMessageAge < 0 || u.LastMessageAge > 2*time.Second {
		t.Fatalf("after a write, upstream %+v", u)
	}
	r := primary.Replica("db2")
	if r == nil || r.PID == 0 {
		t.Fatalf("no WAL sender for db2: %+v", primary.Replicas)
	}
	sender, err := os.FindProcess(r.PID)
	if err != nil {
		t.Fatal(err)
	}
	if err := sender.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("pause the WAL sender: %v", err)
	}
	defer func() { _ = sender.Signal(syscall.SIGCONT) }()
	// Writes on the primary now reach no standby: the receiver hears nothing.
	if err := Exec(ctx, pep, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	Observe(ctx, sep, standby, nil)
	u = standby.Upstream
	if u == nil || u.Status != "streaming" || u.LastMessageAge < 1500*time.Millisecond || u.LastMessageAge > time.Minute {
		t.Fatalf("with the WAL sender paused for 1.5s, upstream %+v", u)
	}
	if err := sender.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	Observe(ctx, pep, primary, nil)
	if err := WaitReplayed(ctx, sep, primary.CurrentLSN); err != nil {
		t.Fatal(err)
	}
	Observe(ctx, sep, standby, nil)
	if u = standby.Upstream; u == nil || u.LastMessageAge > time.Second {
		t.Fatalf("after the sender resumed, upstream %+v", u)
	}
}
