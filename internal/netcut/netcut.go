// Package netcut cuts a loopback TCP port off with iptables: every packet
// to or from the port on lo is dropped, the way a network partition cuts a
// host off (no refusal, no reset: connections hang until their
// timeouts). The e2e tests and `bench -chaos` emulate "a node cut off
// from everything" with it on one machine, where every node listens on
// 127.0.0.1.
//
// Each rule carries a comment naming its owner, PREFIX-PID, so that rules
// left behind by a process that died before undoing them can be found and
// removed (Sweep, SweepDead): a forgotten DROP on a port would break
// whatever uses that port next.
package netcut

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pgha/pgha/internal/proc"
)

// Cutter adds and removes the DROP rules of one process.
type Cutter struct {
	// Tag is the comment of every rule this Cutter adds: PREFIX-PID.
	Tag    string
	prefix string
	bin    string

	mu    sync.Mutex
	ports map[string]bool // every port this Cutter cut
}

// New returns a Cutter tagging its rules prefix-PID ("pgha-e2e-4242"). It
// fails when iptables is not installed.
func New(prefix string) (*Cutter, error) {
	bin, err := exec.LookPath("iptables")
	if err != nil {
		return nil, errors.New("iptables not found: run `make setup` (apt-get install iptables)")
	}
	return &Cutter{Tag: fmt.Sprintf("%s-%d", prefix, os.Getpid()), prefix: prefix, bin: bin}, nil
}

// rules are the four rule specifications (chain first) that cut port: to
// and from it, as the packet leaves (OUTPUT -o lo) and as it arrives
// (INPUT -i lo). Either direction alone would do for TCP; both make the
// cut symmetric whichever side the kernel looks at.
func (c *Cutter) rules(port int) [][]string {
	p := strconv.Itoa(port)
	var out [][]string
	for _, chain := range []struct{ name, dir string }{{"INPUT", "-i"}, {"OUTPUT", "-o"}} {
		for _, match := range []string{"--dport", "--sport"} {
			out = append(out, []string{chain.name, chain.dir, "lo", "-p", "tcp", match, p, "-m", "comment", "--comment", c.Tag, "-j", "DROP"})
		}
	}
	return out
}

// iptables runs iptables -w (waiting for the xtables lock Docker and
// other tests share) with args.
func (c *Cutter) iptables(args ...string) error {
	out, err := exec.Command(c.bin, append([]string{"-w", "5"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Cut drops every TCP packet to and from port on lo, ahead of any rule
// already in INPUT and OUTPUT. The four rules go in at once, in one
// iptables-restore transaction (one by one with iptables when that
// fails): no moment when a direction is cut and the other not, and a cut
// that takes one process, not four, on a loaded machine. undo removes the
// rules again; it may be called more than once (later calls do nothing
// and return the first call's error). When Cut fails, nothing of it is
// left.
func (c *Cutter) Cut(port int) (undo func() error, err error) {
	c.mu.Lock()
	if c.ports == nil {
		c.ports = map[string]bool{}
	}
	c.ports[strconv.Itoa(port)] = true
	c.mu.Unlock()
	rules := c.rules(port)
	if err := c.restore("-I", rules); err != nil {
		if err := c.oneByOne(rules); err != nil {
			return nil, fmt.Errorf("cut port %d: %w", port, err)
		}
	}
	var once sync.Once
	var undoErr error
	return func() error {
		once.Do(func() {
			if c.restore("-D", rules) == nil {
				return
			}
			var errs []error
			for _, r := range rules {
				if err := c.iptables(append([]string{"-D"}, r...)...); err != nil {
					errs = append(errs, err)
				}
			}
			if err := errors.Join(errs...); err != nil {
				undoErr = fmt.Errorf("heal port %d: %w", port, err)
			}
		})
		return undoErr
	}, nil
}

// restore applies op (-I at the head, or -D) to rules in one
// iptables-restore --noflush transaction of the filter table: all or
// nothing.
func (c *Cutter) restore(op string, rules [][]string) error {
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, r := range rules {
		line := append([]string{op, r[0]}, r[1:]...)
		if op == "-I" {
			line = append([]string{op, r[0], "1"}, r[1:]...)
		}
		b.WriteString(strings.Join(line, " ") + "\n")
	}
	b.WriteString("COMMIT\n")
	cmd := exec.Command(c.bin+"-restore", "--noflush")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore --noflush: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// oneByOne inserts rules with one iptables each, removing those it added
// when one fails.
func (c *Cutter) oneByOne(rules [][]string) error {
	var added [][]string
	for _, r := range rules {
		if err := c.iptables(append([]string{"-I", r[0], "1"}, r[1:]...)...); err != nil {
			for _, a := range added {
				err = errors.Join(err, c.iptables(append([]string{"-D"}, a...)...))
			}
			return err
		}
		added = append(added, r)
	}
	return nil
}

// tagged lists the rules of INPUT and OUTPUT whose comment keep accepts,
// as iptables -S prints them ("-A INPUT ... --comment TAG -j DROP").
func (c *Cutter) tagged(keep func(tag string) bool) ([][]string, error) {
	var out [][]string
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		cmd := exec.Command(c.bin, "-w", "5", "-S", chain)
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("iptables -S %s: %w", chain, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			for i := 0; i+1 < len(f); i++ {
				if f[i] == "--comment" && keep(strings.Trim(f[i+1], `"`)) {
					f[i+1] = strings.Trim(f[i+1], `"`)
					out = append(out, f)
					break
				}
			}
		}
	}
	return out, nil
}

// remove deletes rules printed by iptables -S ("-A CHAIN spec...").
func (c *Cutter) remove(rules [][]string) error {
	var errs []error
	for _, r := range rules {
		if len(r) < 2 || r[0] != "-A" {
			continue
		}
		if err := c.iptables(append([]string{"-D"}, r[1:]...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Sweep removes the rules of this Cutter's tag on the ports it cut that
// are still there, an undo failed or forgotten: the last resort of a
// test's cleanup. Rules of another Cutter of the same process (same tag,
// other ports: a test running beside) are left alone. It returns how many
// it removed.
func (c *Cutter) Sweep() (int, error) {
	c.mu.Lock()
	ports := maps.Clone(c.ports)
	c.mu.Unlock()
	rules, err := c.tagged(func(tag string) bool { return tag == c.Tag })
	if err != nil {
		return 0, err
	}
	rules = slices.DeleteFunc(rules, func(r []string) bool {
		for i := 0; i+1 < len(r); i++ {
			if (r[i] == "--dport" || r[i] == "--sport") && ports[r[i+1]] {
				return false
			}
		}
		return true
	})
	return len(rules), c.remove(rules)
}

// SweepDead removes the rules of this Cutter's prefix left by processes
// that no longer run (a test binary killed before its cleanup), and
// leaves those of live processes, which may be cutting a port right now.
// It returns the tags it removed rules of.
func (c *Cutter) SweepDead() ([]string, error) {
	var tags []string
	seen := map[string]bool{}
	rules, err := c.tagged(func(tag string) bool {
		pid, ok := strings.CutPrefix(tag, c.prefix+"-")
		if !ok {
			return false
		}
		n, err := strconv.Atoi(pid)
		if err != nil || n <= 0 {
			return false
		}
		if st, err := proc.Read(n); err == nil && !st.Exited() {
			return false
		}
		if !seen[tag] {
			seen[tag] = true
			tags = append(tags, tag)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return tags, c.remove(rules)
}
