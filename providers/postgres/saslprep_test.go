package postgres

import "testing"

// TestSaslprep pins what pg_saslprep (src/common/saslprep.c) makes of a
// password, step order included: PostgreSQL maps, then checks the mapped
// text (not the NFKC output) for prohibited and unassigned code points and
// for bidi, and on any failure hashes the raw bytes instead of refusing.
// TestScramVerifierMatchesServer and TestScramVerifierLibpqLogin check the
// same cases against a real server and libpq.
func TestSaslprep(t *testing.T) {
	for _, tc := range []struct{ in, want, why string }{
		{"plain-ASCII pw", "plain-ASCII pw", "ASCII is used as it is"},
		{"\x07bell\x7f", "\x07bell\x7f", "ASCII controls too: ASCII skips SASLprep"},
		{"pässwörd", "pässwörd", "NFC already"},
		{"pa\u0308sswo\u0308rd", "pässwörd", "NFKC composes"},
		{"\ufb01le-\uff30ass\u2163", "file-PassIV", "NFKC: ligature, fullwidth, roman numeral"},
		{"no\u00a0break\u3000space", "no break space", "C.1.2 non-ASCII spaces become spaces"},
		{"soft\u00adhy\ufeffphen", "softhyphen", "B.1 mapped to nothing"},
		{"mongolian\u1806todo", "mongoliantodo", "U+1806 is in B.1 (xdg-go's TableB1 lacks it)"},
		{"zero\u200bwidth", "zero width", "U+200B is in C.1.2 and B.1; PostgreSQL maps spaces first"},
		{"\u2003", " ", "a lone non-ASCII space is one space"},
		{"\u05e9\u05dc\u05d5\u05dd", "\u05e9\u05dc\u05d5\u05dd", "right-to-left only"},
		{"\u05e9\u2116\u05dd", "\u05e9No\u05dd", "bidi is checked before NFKC makes U+2116 \"No\""},
		{"\u00e9\u0007bell", "\u00e9\u0007bell", "prohibited control (C.2.1): raw"},
		{"e\u0340tone", "e\u0340tone", "prohibited U+0340 (C.8) is checked before NFKC makes it U+0300: raw"},
		{"x\u2028y\u00e9", "x\u2028y\u00e9", "prohibited line separator (C.2.1): raw"},
		{"\ue000\u00e9", "\ue000\u00e9", "private use (C.3): raw"},
		{"abc\u05e9\u05dc\u05d5\u05dd", "abc\u05e9\u05dc\u05d5\u05dd", "L and R mixed: raw"},
		{"\u05e9\u05dc1", "\u05e9\u05dc1", "R text must end with R: raw"},
		{"smile\U0001F600\ufb01", "smile\U0001F600\ufb01", "unassigned in Unicode 3.2 (A.1): raw, no NFKC"},
		{"a\u2c7csub", "a\u2c7csub", "U+2C7C is unassigned in 3.2 though today's NFKC makes it \"j\": raw"},
		{"\u00ad", "\u00ad", "empty after mapping: raw"},
		{"\u00ad\u200d\ufe0f", "\u00ad\u200d\ufe0f", "empty after mapping: raw"},
		{"\xff\xfe bytes\u00e9", "\xff\xfe bytes\u00e9", "invalid UTF-8: raw"},
		{"", "", "empty is ASCII"},
	} {
		if got := saslprep(tc.in); got != tc.want {
			t.Errorf("saslprep(%+q) = %+q, want %+q (%s)", tc.in, got, tc.want, tc.why)
		}
	}
}
