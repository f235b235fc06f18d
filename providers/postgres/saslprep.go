package postgres

import (
	"strings"
	"unicode/utf8"

	"github.com/xdg-go/stringprep"
	"golang.org/x/text/unicode/norm"
)

// saslprep prepares a password the way PostgreSQL's pg_saslprep
// (src/common/saslprep.c) does before SCRAM hashing. Both the server, when
// it hashes a plaintext password, and libpq, when a client such as the
// standby's WAL receiver logs in, run it; a verifier computed here must run
// it too or non-ASCII passwords would not match at login.
//
// Like PostgreSQL, a password SASLprep rejects (invalid UTF-8, prohibited or
// unassigned characters, bad bidirectional text, empty after mapping) is
// used as raw bytes rather than refused.
//
// The RFC 3454 tables come from xdg-go/stringprep's SASLprep profile, but
// not its Prepare: that checks the NFKC output, maps U+200B to nothing and
// accepts an empty result, where PostgreSQL checks the mapped text before
// normalising, maps U+200B to a space and falls back to the raw bytes. Each
// of these changes the hash (TestSaslprep, TestScramVerifierMatchesServer).
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

	// 1. Map: non-ASCII spaces to a space, then (U+200B is in both tables)
	// "commonly mapped to nothing" away.
	mapped := make([]rune, 0, len(password))
	for _, r := range password {
		switch {
		case stringprep.TableC1_2.Contains(r):
			mapped = append(mapped, ' ')
		case mappedToNothing(r):
		default:
			mapped = append(mapped, r)
		}
	}
	if len(mapped) == 0 {
		return password
	}

	// 3. Prohibit (table A.1, unassigned code points, included) and 4. check
	// bidi. PostgreSQL checks the mapped input, not the normalised output,
	// and so does this.
	randAL := false
	for _, r := range mapped {
		for _, set := range stringprep.SASLprep.Prohibits {
			if set.Contains(r) {
				return password
			}
		}
		if stringprep.TableD1.Contains(r) {
			randAL = true
		}
	}
	if randAL {
		for _, r := range mapped {
			if stringprep.TableD2.Contains(r) {
				return password
			}
		}
		if !stringprep.TableD1.Contains(mapped[0]) || !stringprep.TableD1.Contains(mapped[len(mapped)-1]) {
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

// mappedToNothing is RFC 3454 table B.1. xdg-go/stringprep v1.0.4's TableB1
// lacks U+1806 MONGOLIAN TODO SOFT HYPHEN, which the RFC and PostgreSQL
// list.
func mappedToNothing(r rune) bool {
	_, ok := stringprep.TableB1.Map(r)
	return ok || r == 0x1806
}
