package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// scramIterations matches PostgreSQL's default scram_iterations.
const scramIterations = 4096

// ScramVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores for a
// password. Sending the verifier instead of the password keeps the
// plaintext out of the server, its logs and pg_stat_statements.
// (PostgreSQL applies SASLprep first; for ASCII passwords that is the identity.)
func ScramVerifier(password string, salt []byte, iterations int) string {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		panic(fmt.Sprintf("pbkdf2: %v", err)) // only for invalid parameters, which are constants here
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	serverKey := mac(salted, "Server Key")
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, enc(salt), enc(stored[:]), enc(serverKey))
}

func mac(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// VerifierMatches reports whether a stored SCRAM verifier was made from
// password, by recomputing it with the stored salt and iteration count.
func VerifierMatches(stored, password string) bool {
	rest, ok := strings.CutPrefix(stored, "SCRAM-SHA-256$")
	if !ok {
		return false
	}
	iterSalt, _, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	iterS, saltB64, ok := strings.Cut(iterSalt, ":")
	if !ok {
		return false
	}
	iter, err := strconv.Atoi(iterS)
	if err != nil || iter <= 0 {
		return false
	}
	salt, err := base64.StdEncoding.DecodeString(saltB64)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(ScramVerifier(password, salt, iter)), []byte(stored)) == 1
}

// EnsureRole creates or alters a replication role: LOGIN REPLICATION and
// the given password, sent as a verifier.
func EnsureRole(ctx context.Context, ep Endpoint, name, password string) error {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return fmt.Errorf("ensure role %s: salt: %w", name, err)
	}
	verifier := ScramVerifier(password, salt, scramIterations)
	conn, err := connect(ctx, ep)
	if err != nil {
		return fmt.Errorf("ensure role %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("ensure role %s: %w", name, err)
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	sql := fmt.Sprintf("%s ROLE %s WITH LOGIN REPLICATION PASSWORD '%s'", verb, pgx.Identifier{name}.Sanitize(), verifier)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("ensure role %s: %w", name, err)
	}
	return nil
}

// CreateSlot creates a physical slot that reserves WAL at once; an existing
// slot of that name is left as it is.
func CreateSlot(ctx context.Context, ep Endpoint, name string) error {
	err := Exec(ctx, ep, `SELECT pg_create_physical_replication_slot($1, true)
  WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, name)
	if err != nil {
		return fmt.Errorf("create slot %s: %w", name, err)
	}
	return nil
}

// DropSlot drops a slot; a missing one is fine, an active one is refused
// with the PID that uses it.
func DropSlot(ctx context.Context, ep Endpoint, name string) error {
	conn, err := connect(ctx, ep)
	if err != nil {
		return fmt.Errorf("drop slot %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	var active bool
	var pid int
	err = conn.QueryRow(ctx, "SELECT active, COALESCE(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&active, &pid)
	switch {
	case err == pgx.ErrNoRows:
		return nil
	case err != nil:
		return fmt.Errorf("drop slot %s: %w", name, err)
	case active:
		return fmt.Errorf("drop slot %s: it is in use by pid %d", name, pid)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name); err != nil {
		return fmt.Errorf("drop slot %s: %w", name, err)
	}
	return nil
}
