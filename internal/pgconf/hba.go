package pgconf

import (
	"fmt"
	"regexp"
	"strings"
)

// hbaBare is a token pg_hba.conf reads as one field without quotes.
var hbaBare = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$`)

// hbaKeywords are the words pg_hba.conf gives a meaning when unquoted.
var hbaKeywords = map[string]bool{
	"all": true, "sameuser": true, "samerole": true, "samegroup": true, "replication": true,
	"samehost": true, "samenet": true,
}

// HBAName renders a name (a role, a database, a host name) as one
// pg_hba.conf field that means that name only: bare when plain, else in
// double quotes, which also strips a keyword such as "all" of its
// meaning. A name that pg_hba.conf cannot hold in one field (empty, a
// double quote, a control character) is an error.
func HBAName(s string) (string, error) {
	if hbaBare.MatchString(s) && !hbaKeywords[s] {
		return s, nil
	}
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r == '"' || r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("%q cannot be written as a pg_hba.conf field", s)
	}
	return `"` + s + `"`, nil
}

// hbaTypes and hbaMethods are what pgha writes; anything else in a line
// handed to HBA is refused, trust above all.
var (
	hbaTypes   = map[string]int{"local": 4, "host": 5, "hostssl": 5, "hostnossl": 5}
	hbaMethods = map[string]bool{"scram-sha-256": true, "peer": true, "cert": true, "reject": true}
	// hbaOptions follow the method: replication over TLS also asks for a
	// client certificate from the cluster CA.
	hbaOptions = map[string]bool{"clientcert=verify-ca": true, "clientcert=verify-full": true}
)

// HBAToken is one field of a pg_hba.conf line as PostgreSQL reads it.
type HBAToken struct {
	Text   string
	Quoted bool
}

// ParseHBALine splits one pg_hba.conf line into fields the way
// PostgreSQL's tokenizer does: whitespace separates, double quotes group
// (and make a keyword literal), '#' outside quotes starts a comment
// (reported by comment). A comma list is kept as one field.
func ParseHBALine(line string) (tokens []HBAToken, comment bool, err error) {
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r') {
			i++
		}
		if i >= len(line) {
			return tokens, false, nil
		}
		if line[i] == '#' {
			return tokens, true, nil
		}
		var t HBAToken
		var b strings.Builder
		inQuote := false
		for i < len(line) {
			c := line[i]
			if !inQuote && (c == ' ' || c == '\t' || c == '\r' || c == '#') {
				break
			}
			i++
			if c == '"' {
				inQuote = !inQuote
				t.Quoted = true
				continue
			}
			b.WriteByte(c)
		}
		if inQuote {
			return nil, false, fmt.Errorf("unterminated quote in pg_hba.conf line %q", line)
		}
		t.Text = b.String()
		tokens = append(tokens, t)
	}
}

// checkHBALine accepts a line only when it is one rule pgha means to
// write: a known connection type, the right number of fields, a method
// pgha uses (never trust), no comment and no line break.
func checkHBALine(line string) error {
	if strings.ContainsAny(line, "\r\n\x00") {
		return fmt.Errorf("pg_hba.conf line %q contains a line break or NUL", line)
	}
	tokens, comment, err := ParseHBALine(line)
	if err != nil {
		return err
	}
	if comment {
		return fmt.Errorf("pg_hba.conf line %q contains a comment", line)
	}
	if len(tokens) == 0 || tokens[0].Quoted {
		return fmt.Errorf("pg_hba.conf line %q has no connection type", line)
	}
	n, ok := hbaTypes[tokens[0].Text]
	if !ok {
		return fmt.Errorf("pg_hba.conf line %q: unknown connection type %q", line, tokens[0].Text)
	}
	if len(tokens) < n {
		return fmt.Errorf("pg_hba.conf line %q has %d fields, not %d", line, len(tokens), n)
	}
	for _, o := range tokens[n:] {
		if o.Quoted || !hbaOptions[o.Text] {
			return fmt.Errorf("pg_hba.conf line %q has %d fields, not %d", line, len(tokens), n)
		}
	}
	if m := tokens[n-1]; m.Quoted || !hbaMethods[m.Text] {
		return fmt.Errorf("pg_hba.conf line %q: method %q is not one pgha writes", line, m.Text)
	}
	return nil
}
