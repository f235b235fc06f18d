package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Sentinel opens an idle connection to the server at ep and reports on
// lost, once, when the server ends it: a backend waiting for its client
// exits at once when its postmaster dies ("terminating connection due
// to unexpected postmaster exit") or the server shuts down, and the
// connection closes. Health checks learn of a killed primary from it in
// milliseconds, where an observation comes at most once a check
// interval and takes a while (on Docker 0.5-1 s under load). It sends
// nothing while it waits, so it costs the server one idle backend.
// Messages a server sends an idle session on its own (a parameter
// status after a reload, a notice) are read past; an error message, the
// end of the stream or a failed read is the end. close ends the wait
// and the connection.
func Sentinel(ctx context.Context, ep Endpoint) (lost <-chan error, close func(), err error) {
	conn, err := connect(ctx, ep)
	if err != nil {
		return nil, nil, err
	}
	nc := conn.PgConn().Conn()
	ch := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			switch {
			case n > 0 && buf[0] == 'E':
				ch <- fmt.Errorf("%s ended the session: %s", ep.name(), errorText(buf[:n]))
				return
			case err != nil:
				if errors.Is(err, io.EOF) {
					err = errors.New("the server closed the connection")
				}
				ch <- fmt.Errorf("%s: %w", ep.name(), err)
				return
			}
		}
	}()
	return ch, func() { _ = nc.Close() }, nil
}

// errorText is the message ('M') field of an ErrorResponse, as far as
// the bytes read hold it.
func errorText(b []byte) string {
	if len(b) < 5 {
		return "an error"
	}
	for f := b[5:]; len(f) > 1; {
		code := f[0]
		end := 1
		for end < len(f) && f[end] != 0 {
			end++
		}
		if code == 'M' {
			return string(f[1:end])
		}
		if end+1 > len(f) {
			break
		}
		f = f[end+1:]
	}
	return "an error"
}
