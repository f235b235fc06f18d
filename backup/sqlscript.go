package backup

import (
	"bufio"
	"io"
	"strings"
)

// ForFreshCluster adapts a pg_dumpall script to a cluster initdb just
// made with superuser as its bootstrap role: it drops the one statement
// that must fail there, "CREATE ROLE <superuser>;" (pg_dumpall writes it so
// that the ALTER ROLE after it applies either way). With that gone, a
// restore runs psql with ON_ERROR_STOP and any other error — a damaged
// script, a missing object — fails the restore instead of being printed
// and passed over. Only the roles part, before the first \connect, is
// looked at; table data is passed through untouched.
func ForFreshCluster(script io.Reader, superuser string) io.Reader {
	return &freshFilter{br: bufio.NewReaderSize(script, 64<<10), skip: map[string]bool{
		"CREATE ROLE " + superuser + ";":                                  true,
		`CREATE ROLE "` + strings.ReplaceAll(superuser, `"`, `""`) + `";`: true,
	}}
}

type freshFilter struct {
	br   *bufio.Reader
	skip map[string]bool
	buf  string
	done bool // past the roles part: copy the rest as is
	err  error
}

func (f *freshFilter) Read(p []byte) (int, error) {
	for f.buf == "" {
		if f.err != nil {
			return 0, f.err
		}
		if f.done {
			return f.br.Read(p)
		}
		line, err := f.br.ReadString('\n')
		f.err = err
		if strings.HasPrefix(line, `\connect`) {
			f.done = true
		}
		if !f.skip[strings.TrimRight(line, "\r\n")] {
			f.buf = line
		}
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}
