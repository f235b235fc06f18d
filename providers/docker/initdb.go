package docker

import (
	"context"
	"fmt"
	"strings"
)

// InitDB initialises a new cluster in the node's (empty) data directory,
// creating the container first when needed. As on the local runtime: data
// checksums on (pg_rewind needs them), peer locally and scram-sha-256 over
// TCP, and the superuser's password read from a 0600 file in the volume
// that is removed afterwards, never from a command line.
func (r *Runtime) InitDB(ctx context.Context, n Node, superuser, password string) error {
	if superuser == "" {
		return fmt.Errorf("initdb in %s: no superuser name", r.Name(n.Name))
	}
	if strings.ContainsAny(password, "\r\n") {
		return fmt.Errorf("initdb in %s: the superuser password contains a line break, which initdb's password file cannot carry", r.Name(n.Name))
	}
	if err := r.CreateNode(ctx, n); err != nil {
		return err
	}
	pwfile := VolumeDir + "/.pwfile"
	done, err := r.secret(ctx, n.Name, pwfile, []byte(password+"\n"))
	if err != nil {
		return err
	}
	defer done()
	_, err = r.pg(ctx, n.Name, nil, "initdb", "-D", PGData, "-U", superuser, "--pwfile", pwfile,
		"--data-checksums", "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions")
	return err
}
