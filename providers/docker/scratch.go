package docker

import (
	"context"
	"fmt"
	"io"
)

// Scratch is a throwaway container of the nodes' image, with a volume of
// its own and PostgreSQL's port published on a loopback port (on a remote
// engine: at the nodes' bind address, where pgha can reach it), that a
// backup is restored into and started in (backup verify -restore). No host
// directory is mounted, so a remote engine works too. Remove takes the
// container and its volume away.
type Scratch struct {
	r    *Runtime
	Node string // its name among the cluster's resources: restore-<port>
	Port int    // the loopback port its PostgreSQL is published on
	Root string // its volume's mount point
	Data string // the restored data directory
	Log  string // the server log
}

// StartScratch creates a scratch container published on bind:port.
// A volume, not the container's layered filesystem: restoring writes the
// database twice over (the parts, then the combined directory).
func (r *Runtime) StartScratch(ctx context.Context, bind string, port int) (*Scratch, error) {
	root := "/var/lib/postgresql/pgha-restore"
	s := &Scratch{r: r, Node: fmt.Sprintf("restore-%d", port), Port: port, Root: root, Data: root + "/data", Log: root + "/postgresql.log"}
	if _, err := r.eng.EnsureNetwork(ctx); err != nil {
		return nil, err
	}
	if err := r.eng.EnsureVolume(ctx, s.Node); err != nil {
		return nil, err
	}
	err := r.eng.EnsureContainer(ctx, Spec{Node: s.Node, Role: "scratch", Image: r.o.Image, Config: r.o.Image,
		Mount: root, Port: Port, Bind: bind, HostPort: port})
	if err == nil {
		_, err = r.eng.Exec(ctx, s.Node, "root", nil, nil, "sh", "-c", `mkdir -p "$0" && chown `+User+`: "$0"`, root)
	}
	if err != nil {
		s.Remove()
		return nil, err
	}
	return s, nil
}

// Remove removes the scratch container and its volume (the restored data).
func (s *Scratch) Remove() {
	_ = s.r.eng.RemoveContainer(context.Background(), s.Node)
	_ = s.r.eng.RemoveVolume(context.Background(), s.Node)
}

// LogTail is the end of the scratch server's log ("" when there is none).
func (s *Scratch) LogTail() string {
	out, _ := s.r.eng.Exec(context.Background(), s.Node, User, nil, nil, "tail", "-n", "40", s.Log)
	return out
}

// pg runs a PostgreSQL program in the scratch container; its error
// carries the program's output.
func (s *Scratch) pg(ctx context.Context, name string, args ...string) error {
	bin, err := s.r.bin(ctx, s.Node, name)
	if err != nil {
		return err
	}
	if o, err := s.r.eng.Exec(ctx, s.Node, User, nil, nil, append([]string{bin}, args...)...); err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, o)
	}
	return nil
}

// LoadChain restores ch into s.Data (Runtime.RestoreNode's way), checking
// it with pg_verifybackup first when check is set.
func (s *Scratch) LoadChain(ctx context.Context, ch Chain, check bool, out io.Writer) error {
	return s.r.loadChain(ctx, restoreTarget{node: s.Node, root: s.Root, data: s.Data, pg: s.pg}, ch, check, out)
}

// Recover prepares the restored directory to start: conf is appended to
// postgresql.auto.conf (read last), recovery.signal is set or removed,
// standby.signal and a copied postmaster.pid go, and pg_hba.conf becomes
// one plain line: a scratch instance is reached in plain text on its
// loopback port (the node's certificates are not in the container).
func (s *Scratch) Recover(ctx context.Context, conf []byte, recovery bool) error {
	signal := "rm -f \"$0/recovery.signal\""
	if recovery {
		signal = "touch \"$0/recovery.signal\""
	}
	script := `set -e; rm -f "$0/standby.signal" "$0/postmaster.pid"; ` + signal + `; cat >> "$0/postgresql.auto.conf"; chmod 700 "$0"
printf 'local all all peer\nhost all all all scram-sha-256\n' > "$0/pg_hba.conf"`
	_, err := s.r.eng.Exec(ctx, s.Node, User, nil, conf, "sh", "-c", script, s.Data)
	return err
}

// Start starts the scratch server and waits (two minutes: recovery may
// replay a day of WAL) until it accepts connections.
func (s *Scratch) Start(ctx context.Context) error {
	return s.pg(ctx, "pg_ctl", "-D", s.Data, "-l", s.Log, "-w", "-t", "120", "start")
}

// InitDB makes a fresh cluster in s.Data for a logical dump to load into,
// listening on every address of the container with passwords over TCP,
// and starts it. The password goes through a 0600 file, removed after.
func (s *Scratch) InitDB(ctx context.Context, superuser, password string) error {
	pwfile := s.Root + "/.pwfile"
	done, err := s.r.secret(ctx, s.Node, pwfile, []byte(password+"\n"))
	if err != nil {
		return err
	}
	err = s.pg(ctx, "initdb", "-D", s.Data, "-U", superuser, "--pwfile="+pwfile, "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions")
	done()
	if err != nil {
		return err
	}
	conf := []byte("listen_addresses = '*'\nport = 5432\n")
	hba := []byte("host all all all scram-sha-256\n")
	if _, err := s.r.eng.Exec(ctx, s.Node, User, nil, conf, "sh", "-c", `cat >> "$0/postgresql.auto.conf"`, s.Data); err != nil {
		return err
	}
	if _, err := s.r.eng.Exec(ctx, s.Node, User, nil, hba, "sh", "-c", `cat >> "$0/pg_hba.conf"`, s.Data); err != nil {
		return err
	}
	return s.Start(ctx)
}

// LoadSQL feeds a SQL script to psql in the scratch container, against
// its server on loopback as dst.User (dst's host and port are not used);
// psql stops at the first error and so does the load.
func (s *Scratch) LoadSQL(ctx context.Context, dst SQLSource, script io.Reader) error {
	pf := "/var/lib/postgresql/.pgha-pgpass-superuser"
	done, err := s.r.passfile(ctx, s.Node, pf, dst)
	if err != nil {
		return err
	}
	defer done()
	bin, err := s.r.bin(ctx, s.Node, "psql")
	if err != nil {
		return err
	}
	env := []string{"PGPASSFILE=" + pf, "PGAPPNAME=pgha-restore"}
	if o, err := s.r.eng.ExecIn(ctx, s.Node, User, env, script, bin, "-h", "127.0.0.1", "-U", dst.User, "--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", "-"); err != nil {
		return fmt.Errorf("psql: %w\n%s", err, o)
	}
	return nil
}
