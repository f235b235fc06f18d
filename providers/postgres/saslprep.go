package postgres

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

//go:generate python3 gen_saslprep_tables.py

// saslprep prepares a password the way PostgreSQL's pg_saslprep
// (src/common/saslprep.c) does before SCRAM hashing. Both the server, when
// it hashes a plaintext password, and libpq, when a client such as the
// standby's WAL receiver logs in, run it; a verifier computed here must run
// it too or non-ASCII passwords would not match at login.
//
// Like PostgreSQL, a password SASLprep rejects (invalid UTF-8, prohibited or
// unassigned characters, bad bidirectional text, empty after mapping) is
// used as raw bytes rather than refused.
func saslprep(password string) string {
	ascii := true
	for i := 0; i < len(password); i++ {
		if password[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii || !utf8.ValidString(password) {
		return password
	}

	// 1. Map: non-ASCII spaces to a space, "commonly mapped to nothing" away.
	mapped := make([]rune, 0, len(password))
	for _, r := range password {
		switch {
		case unicode.Is(saslprepNonASCIISpace, r):
			mapped = append(mapped, ' ')
		case unicode.Is(saslprepMappedToNothing, r):
		default:
			mapped = append(mapped, r)
		}
	}
	if len(mapped) == 0 {
		return password
	}

	// 3. Prohibit and 4. check bidi. PostgreSQL checks the mapped input,
	// not the normalised output, and so does this.
	randAL := false
	for _, r := range mapped {
		if unicode.Is(saslprepProhibited, r) || unicode.Is(saslprepUnassigned, r) {
			return password
		}
		if unicode.Is(saslprepRandALCat, r) {
			randAL = true
		}
	}
	if randAL {
		for _, r := range mapped {
			if unicode.Is(saslprepLCat, r) {
				return password
			}
		}
		if !unicode.Is(saslprepRandALCat, mapped[0]) || !unicode.Is(saslprepRandALCat, mapped[len(mapped)-1]) {
			return password
		}
	}

	// 2. Normalise (NFKC).
	var b strings.Builder
	for _, r := range mapped {
		b.WriteRune(r)
	}
	return norm.NFKC.String(b.String())
}
