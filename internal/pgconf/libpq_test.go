package pgconf_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/internal/pgconf"
	"github.com/pgha/pgha/internal/testenv"
)

// TestRenderersAgainstPostgreSQL checks the renderers against the real
// readers: libpq reads the passfile and the conninfo pgconf writes (psql
// logs in with the password meant for a role whose name is "*", "#…" or
// holds ':' and '\'), and the server's own pg_hba.conf parser reads the
// lines with quoted names as exactly the rules meant.
func TestRenderersAgainstPostgreSQL(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	roles := []pgconf.PassEntry{
		{Host: "127.0.0.1", Port: pg.Port, Database: "postgres", User: "*", Password: "star:pw\\*"},
		{Host: "127.0.0.1", Port: pg.Port, Database: "postgres", User: `#we:ird\role`, Password: `p:a\ss*#w'd "x"`},
		{Host: "127.0.0.1", Port: pg.Port, Database: "postgres", User: "all", Password: "all-pw"},
	}
	for _, r := range roles {
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s",
			pgx.Identifier{r.User}.Sanitize(), "'"+strings.ReplaceAll(r.Password, "'", "''")+"'")); err != nil {
			t.Fatal(err)
		}
	}
	dir := testenv.Dir(t)
	testenv.Chown(t, dir)
	pass, err := pgconf.Passfile(roles)
	if err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(dir, "pgpass")
	if err := os.WriteFile(pf, pass, 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.Chown(t, pf)

	for _, r := range roles {
		app := "pgha test: " + r.User + " ' \\ =x"
		ci := pgconf.Conninfo(pgconf.KV{Key: "host", Value: "127.0.0.1"}, pgconf.KV{Key: "port", Value: fmt.Sprint(pg.Port)},
			pgconf.KV{Key: "user", Value: r.User}, pgconf.KV{Key: "dbname", Value: "postgres"},
			pgconf.KV{Key: "passfile", Value: pf}, pgconf.KV{Key: "application_name", Value: app}, pgconf.KV{Key: "sslmode", Value: "disable"})
		cmd := testenv.Command(t, filepath.Join(pg.BinDir, "psql"), "-X", "-A", "-t", "-w", "-d", ci,
			"-c", "SELECT current_user || '|' || current_setting('application_name')")
		cmd.Env = append(cmd.Env, "PGPASSWORD=", "PGPASSFILE=/nonexistent")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql as %q with %s: %v\n%s", r.User, ci, err, out)
		}
		if got, want := strings.TrimSpace(string(out)), r.User+"|"+app; got != want {
			t.Errorf("psql as %q: %q, want %q", r.User, got, want)
		}
	}

	// pg_hba.conf: the server reads what HBA accepts as the rules meant. A
	// quoted "all" is the role named all, not every role: postgres finds
	// no entry; a reject rule for the weird name applies to it alone.
	line := func(user, method string) string {
		u, err := pgconf.HBAName(user)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("host all %s 127.0.0.1/32 %s", u, method)
	}
	lines := []string{"local all all peer", line("all", "scram-sha-256"), line("*", "scram-sha-256"), line(`#we:ird\role`, "reject")}
	hba, err := pgconf.HBA(lines)
	if err != nil {
		t.Fatal(err)
	}
	hbaPath := filepath.Join(pg.DataDir, "pg_hba.conf")
	if err := os.WriteFile(hbaPath, hba, 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.Chown(t, hbaPath)
	var reloaded bool
	if err := conn.QueryRow(ctx, "SELECT pg_reload_conf()").Scan(&reloaded); err != nil || !reloaded {
		t.Fatalf("reload: %v %v", reloaded, err)
	}
	rows, err := conn.Query(ctx, `SELECT type, user_name, coalesce(address, ''), auth_method, coalesce(error, '')
		FROM pg_hba_file_rules ORDER BY line_number`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var typ, addr, method, perr string
		var users []string
		if err := rows.Scan(&typ, &users, &addr, &method, &perr); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %q %s %s%s", typ, users, addr, method, perr))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{`local ["all"]  peer`, `host ["all"] 127.0.0.1 scram-sha-256`, `host ["*"] 127.0.0.1 scram-sha-256`,
		`host ["#we:ird\\role"] 127.0.0.1 reject`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("pg_hba_file_rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, tc := range []struct{ user, err string }{
		{"all", ""}, {"*", ""},
		{`#we:ird\role`, `pg_hba.conf rejects connection for host "127.0.0.1", user "#we:ird\role"`},
		{"postgres", `no pg_hba.conf entry for host "127.0.0.1", user "postgres"`},
	} {
		pw := pg.Password
		for _, r := range roles {
			if r.User == tc.user {
				pw = r.Password
			}
		}
		c, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres sslmode=disable user=%s password=%s",
			pg.Port, pgconfQuote(tc.user), pgconfQuote(pw)))
		if err == nil {
			c.Close(ctx)
		}
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("connect as %q: %v, want %q", tc.user, err, tc.err)
		}
	}
}

func pgconfQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
