package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// scramIterations matches PostgreSQL's default scram_iterations.
const scramIterations = 4096

// maxScramIterations bounds the work VerifierMatches accepts from a stored
// verifier, so that a strange catalog entry cannot stall an observation.
const maxScramIterations = 1 << 20

// SQLSTATEs the slot and role actions treat as "already done".
const (
	sqlstateDuplicateObject = "42710"
	sqlstateUndefinedObject = "42704"
)

// ScramVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores for a
// password: "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>".
// Sending the verifier instead of the password keeps the plaintext out of
// the server, its logs and pg_stat_statements. The password goes through
// SASLprep first, as PostgreSQL and libpq do. It returns "" only for
// parameters PBKDF2 refuses (e.g. iterations < 1).
func ScramVerifier(password string, salt []byte, iterations int) string {
	stored, server, ok := scramKeys(password, salt, iterations)
	if !ok {
		return ""
	}
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, enc(salt), enc(stored), enc(server))
}

func scramKeys(password string, salt []byte, iterations int) (stored, server []byte, ok bool) {
	if iterations < 1 {
		return nil, nil, false
	}
	salted, err := pbkdf2.Key(sha256.New, saslprep(password), salt, iterations, sha256.Size)
	if err != nil {
		return nil, nil, false
	}
	clientKey := mac(salted, "Client Key")
	sum := sha256.Sum256(clientKey)
	return sum[:], mac(salted, "Server Key"), true
}

func mac(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// VerifierMatches reports whether a stored SCRAM verifier was made from
// password, by recomputing StoredKey and ServerKey with the stored salt and
// iteration count. It is false for anything that is not a SCRAM-SHA-256
// verifier (md5 hashes, plaintext, empty).
func VerifierMatches(stored, password string) bool {
	rest, ok := strings.CutPrefix(stored, "SCRAM-SHA-256$")
	if !ok {
		return false
	}
	iterSalt, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	iterS, saltB64, ok := strings.Cut(iterSalt, ":")
	if !ok {
		return false
	}
	storedB64, serverB64, ok := strings.Cut(keys, ":")
	if !ok {
		return false
	}
	iter, err := strconv.Atoi(iterS)
	if err != nil || iter < 1 || iter > maxScramIterations {
		return false
	}
	dec := base64.StdEncoding.DecodeString
	salt, err1 := dec(saltB64)
	wantStored, err2 := dec(storedB64)
	wantServer, err3 := dec(serverB64)
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	gotStored, gotServer, ok := scramKeys(password, salt, iter)
	return ok && subtle.ConstantTimeCompare(gotStored, wantStored)&subtle.ConstantTimeCompare(gotServer, wantServer) == 1
}

// EnsureRole creates or alters a role so that it can log in and replicate
// with password. The password is sent as a verifier computed here, so the
// plaintext never reaches the server or its logs.
func EnsureRole(ctx context.Context, ep Endpoint, name, password string) error {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return fmt.Errorf("ensure role %s: make a salt: %w", name, err)
	}
	verifier := ScramVerifier(password, salt, scramIterations)
	if verifier == "" {
		return fmt.Errorf("ensure role %s: could not compute a SCRAM verifier", name)
	}
	conn, err := connect(ctx, ep)
	if err != nil {
		return fmt.Errorf("ensure role %s: %w", name, err)
	}
	defer closeConn(conn)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("ensure role %s: %w", name, err)
	}
	// The verifier is base64 and "$:" only, so it cannot break out of the
	// literal; the name is quoted as an identifier.
	ident := pgx.Identifier{name}.Sanitize()
	stmt := func(verb string) string {
		return fmt.Sprintf("%s ROLE %s WITH LOGIN REPLICATION PASSWORD '%s'", verb, ident, verifier)
	}
	if !exists {
		_, err = conn.Exec(ctx, stmt("CREATE"))
		if !isSQLState(err, sqlstateDuplicateObject) { // created, failed, or created meanwhile by someone else
			if err != nil {
				return fmt.Errorf("ensure role %s: create: %w", name, err)
			}
			return nil
		}
	}
	if _, err := conn.Exec(ctx, stmt("ALTER")); err != nil {
		return fmt.Errorf("ensure role %s: alter: %w", name, err)
	}
	return nil
}

// CreateSlot creates a physical slot that reserves WAL at once, so that a
// standby cloned right after finds every segment it needs. An existing slot
// of that name is left as it is.
func CreateSlot(ctx context.Context, ep Endpoint, name string) error {
	err := Exec(ctx, ep, `SELECT pg_create_physical_replication_slot($1, true)
  WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, name)
	if err != nil && !isSQLState(err, sqlstateDuplicateObject) { // duplicate: created concurrently
		return fmt.Errorf("create slot %s: %w", name, err)
	}
	return nil
}

// DropSlot drops a slot. A missing slot is fine; an active one is refused
// with the PID that uses it, because dropping it would cut off a standby.
func DropSlot(ctx context.Context, ep Endpoint, name string) error {
	conn, err := connect(ctx, ep)
	if err != nil {
		return fmt.Errorf("drop slot %s: %w", name, err)
	}
	defer closeConn(conn)
	var active bool
	var pid int
	err = conn.QueryRow(ctx, "SELECT active, COALESCE(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&active, &pid)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("drop slot %s: %w", name, err)
	case active:
		return fmt.Errorf("drop slot %s: it is in use by pid %d", name, pid)
	}
	// Between the check and the drop the slot may vanish (fine) or become
	// active (PostgreSQL's error then names the PID).
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name); err != nil && !isSQLState(err, sqlstateUndefinedObject) {
		return fmt.Errorf("drop slot %s: %w", name, err)
	}
	return nil
}

// DropSlotEndingSender drops a slot on a node that must keep none (a
// rejoined former primary), ending the WAL sender that holds it first; the
// client may reconnect between the two, so it tries a few times.
func DropSlotEndingSender(ctx context.Context, ep Endpoint, name string) error {
	var err error
	for range 5 {
		if err = Exec(ctx, ep, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, name); err != nil {
			return fmt.Errorf("drop slot %s: %w", name, err)
		}
		if err = DropSlot(ctx, ep, name); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
	return err
}

func isSQLState(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
