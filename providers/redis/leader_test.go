package redis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/testenv"
	"github.com/pgha/pgha/state"
)

// TestLeaderOneOfMany: of several watchers trying at once, exactly one
// becomes leader; the others are told who is. Once the leader releases,
// another one gets it; the cluster lock is another key and is not
// affected either way.
func TestLeaderOneOfMany(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	const n = 8
	cats := make([]*Catalog, n)
	for i := range cats {
		cats[i] = New(r.Addr, "", 0, "lead")
		defer cats[i].Close()
	}
	leases := make([]*Lease, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			info := state.Lock{ID: fmt.Sprintf("w%d", i), Owner: "pgha", Host: fmt.Sprintf("host%d", i), PID: 100 + i, Operation: "watch", Created: time.Now()}
			leases[i], errs[i] = cats[i].AcquireLeader(ctx, info, 2*time.Second, nil)
		}()
	}
	close(start)
	wg.Wait()
	leader := -1
	for i := range n {
		if errs[i] == nil {
			if leader >= 0 {
				t.Fatalf("two leaders: w%d and w%d", leader, i)
			}
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("no leader: %v", errs)
	}
	defer leases[leader].Release(ctx)
	for i := range n {
		if i == leader {
			continue
		}
		var he *LeaderHeldError
		if !errors.Is(errs[i], ErrLeaderHeld) || !errors.As(errs[i], &he) || he.Holder == nil || he.Holder.ID != fmt.Sprintf("w%d", leader) {
			t.Fatalf("w%d: %v, want ErrLeaderHeld naming w%d", i, errs[i], leader)
		}
		for _, want := range []string{fmt.Sprintf("ID w%d", leader), fmt.Sprintf("pgha@host%d pid %d", leader, 100+leader)} {
			if !strings.Contains(errs[i].Error(), want) {
				t.Errorf("w%d's error %q lacks %q", i, errs[i], want)
			}
		}
	}
	if h, err := cats[0].Leader(ctx); err != nil || h == nil || h.ID != fmt.Sprintf("w%d", leader) {
		t.Fatalf("Leader() = %+v, %v", h, err)
	}
	// The cluster lock is free and can be taken while a leader exists.
	lock, err := cats[0].Acquire(ctx, state.Lock{ID: "apply"}, AcquireOptions{})
	if err != nil {
		t.Fatalf("cluster lock while a leader holds its lease: %v", err)
	}
	defer lock.Release(ctx)

	// The leader renews past its TTL.
	time.Sleep(2500 * time.Millisecond)
	other := (leader + 1) % n
	if _, err := cats[other].AcquireLeader(ctx, state.Lock{ID: "late"}, 2*time.Second, nil); !errors.Is(err, ErrLeaderHeld) {
		t.Fatalf("acquire after the TTL while the leader renews: %v", err)
	}
	select {
	case <-leases[leader].Lost():
		t.Fatal("a renewed leader lease was declared lost")
	default:
	}
	if err := leases[leader].Release(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := cats[other].AcquireLeader(ctx, state.Lock{ID: "next"}, 2*time.Second, nil)
	if err != nil {
		t.Fatalf("acquire after the leader released: %v", err)
	}
	defer l.Release(ctx)
	if _, _, h, _ := cats[0].Observe(ctx); h == nil || h.ID != "apply" {
		t.Fatalf("the leader's release touched the cluster lock: %+v", h)
	}
}

// TestLeaderRetakesOwnAndGone: a watcher takes back a key holding its own
// ID (its lease was lost, the key is still there) and a holder gone
// declares dead, at once; Verify and Lost of the replaced lease say it is
// no longer leader.
func TestLeaderRetakesOwnAndGone(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	c := New(r.Addr, "", 0, "retake")
	defer c.Close()
	old, err := c.AcquireLeader(ctx, state.Lock{ID: "a", Host: "h1", PID: 7}, 3*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.AcquireLeader(ctx, state.Lock{ID: "a", Host: "h1", PID: 7}, 3*time.Second, nil)
	if err != nil || again.TookOver() != nil {
		t.Fatalf("retake of its own key: tookOver %+v, %v", again.TookOver(), err)
	}
	old.Release(ctx) // its own ID: the key goes; the next watcher takes it
	again.Release(ctx)
	first, err := c.AcquireLeader(ctx, state.Lock{ID: "dead", Host: "h1", PID: 8}, 3*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AcquireLeader(ctx, state.Lock{ID: "b"}, 3*time.Second, func(*state.Lock) bool { return false }); !errors.Is(err, ErrLeaderHeld) {
		t.Fatalf("over a live holder: %v", err)
	}
	start := time.Now()
	l, err := c.AcquireLeader(ctx, state.Lock{ID: "b"}, 3*time.Second, func(h *state.Lock) bool { return h.PID == 8 })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	if time.Since(start) > time.Second {
		t.Fatalf("take-over of a gone holder took %s", time.Since(start))
	}
	if tk := l.TookOver(); tk == nil || tk.ID != "dead" {
		t.Fatalf("TookOver = %+v", tk)
	}
	if err := first.Verify(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("verify of the replaced lease: %v", err)
	}
	select {
	case <-first.Lost():
	default:
		t.Fatal("Lost not closed on the replaced lease")
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := c.Leader(ctx); h == nil || h.ID != "b" {
		t.Fatalf("the replaced lease's release removed the new leader: %+v", h)
	}
}

// leaderChildEnv tells the test binary, started again by
// TestLeaderExpiresAfterKill, to be a watcher that holds the lease.
const leaderChildEnv = "PGHA_TEST_LEADER_CHILD"

// TestLeaderChild is not a test: it is the watcher process of
// TestLeaderExpiresAfterKill, which kills it with SIGKILL.
func TestLeaderChild(t *testing.T) {
	addr := os.Getenv(leaderChildEnv)
	if addr == "" {
		return // only the child process TestLeaderExpiresAfterKill starts does the work; a helper, not a skipped test
	}
	c := New(addr, "", 0, "killed")
	ttl, _ := time.ParseDuration(os.Getenv(leaderChildEnv + "_TTL"))
	host, _ := os.Hostname()
	_, err := c.AcquireLeader(context.Background(), state.Lock{ID: "child", Owner: "pgha", Host: host, PID: os.Getpid(), Operation: "watch"}, ttl, nil)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("leader")
	time.Sleep(time.Minute)
	os.Exit(0)
}

// TestLeaderExpiresAfterKill: a leader killed with SIGKILL renews no more
// and releases nothing; another watcher becomes leader once the lease
// has run out, and not before.
func TestLeaderExpiresAfterKill(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	const ttl = 1500 * time.Millisecond
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeaderChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), leaderChildEnv+"="+r.Addr, leaderChildEnv+"_TTL="+ttl.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "leader" {
		t.Fatalf("child watcher: %q %v", line, err)
	}
	// Let it renew a few times, so that its lease ran past one TTL.
	time.Sleep(2 * ttl)
	c := New(r.Addr, "", 0, "killed")
	defer c.Close()
	if _, err := c.AcquireLeader(ctx, state.Lock{ID: "successor"}, ttl, nil); !errors.Is(err, ErrLeaderHeld) ||
		!strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("acquire while the child leads: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := time.Now()
	var l *Lease
	for {
		l, err = c.AcquireLeader(ctx, state.Lock{ID: "successor"}, ttl, nil)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrLeaderHeld) {
			t.Fatal(err)
		}
		if time.Since(killed) > 3*ttl {
			t.Fatalf("the dead leader's lease did not run out in %s: %v", 3*ttl, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer l.Release(ctx)
	took := time.Since(killed)
	t.Logf("leader killed → successor acquired after %s (TTL %s)", took.Round(time.Millisecond), ttl)
	// Its last renewal was about TTL/3 before the kill at most (a busy
	// machine delays a tick: half a TTL leaves room for that).
	if took < ttl/2 {
		t.Fatalf("the successor became leader %s after the kill, before the lease (%s) could have run out", took, ttl)
	}
	if took > ttl+500*time.Millisecond {
		t.Fatalf("the successor became leader only %s after the kill (TTL %s)", took, ttl)
	}
}

// TestLeaderLostWhenCatalogStops: a leader whose catalog stops answering
// is told through Lost within one TTL of its last renewal, before the
// key could have expired for anyone else.
func TestLeaderLostWhenCatalogStops(t *testing.T) {
	r := testenv.StartRedis(t)
	c := New(r.Addr, "", 0, "stop")
	defer c.Close()
	const ttl = 1500 * time.Millisecond
	l, err := c.AcquireLeader(context.Background(), state.Lock{ID: "a"}, ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl) // renewed a few times
	r.Stop()
	stopped := time.Now()
	select {
	case <-l.Lost():
	case <-time.After(2 * ttl):
		t.Fatalf("Lost not closed %s after the catalog stopped", 2*ttl)
	}
	took := time.Since(stopped)
	t.Logf("catalog stopped → lease lost after %s (TTL %s)", took.Round(time.Millisecond), ttl)
	// Lost fires at 0.9 TTL after the last renewal was sent, at most
	// TTL/3 before the stop; a quarter second is left for a busy machine.
	if took > ttl+250*time.Millisecond {
		t.Fatalf("lost only %s after the catalog stopped (TTL %s)", took, ttl)
	}
	if took < ttl/2 {
		t.Fatalf("lost %s after the catalog stopped: sooner than a lease without renewal", took)
	}
	if err := l.Verify(context.Background()); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("verify of a lost lease: %v", err)
	}
}

// TestPutRecordIf: the record is written only at the expected generation;
// a stale writer changes nothing and is told both generations.
func TestPutRecordIf(t *testing.T) {
	r := testenv.StartRedis(t)
	c := New(r.Addr, "", 0, "fence")
	defer c.Close()
	ctx := context.Background()
	var ge *state.RecordMovedError
	if err := c.PutRecordIf(ctx, state.ClusterRecord{Name: "fence", Primary: "db1", Generation: 1}, 3); !errors.As(err, &ge) || !ge.Absent || ge.Expected != 3 {
		t.Fatalf("expecting generation 3 of no record: %v", err)
	}
	if _, rec, _, _ := c.Observe(ctx); rec != nil {
		t.Fatalf("a refused write stored %+v", rec)
	}
	if err := c.PutRecordIf(ctx, state.ClusterRecord{Name: "fence", Primary: "db1", Generation: 1}, 0); err != nil {
		t.Fatalf("first record: %v", err)
	}
	if err := c.PutRecordIf(ctx, state.ClusterRecord{Name: "fence", Primary: "db9", Generation: 1}, 0); !errors.As(err, &ge) || ge.Stored != 1 || ge.Expected != 0 || ge.Absent {
		t.Fatalf("expecting no record over generation 1: %v", err)
	}
	if err := c.PutRecordIf(ctx, state.ClusterRecord{Name: "fence", Primary: "db2", Generation: 2, Revision: 1}, 1); err != nil {
		t.Fatalf("generation 1 → 2: %v", err)
	}
	err := c.PutRecordIf(ctx, state.ClusterRecord{Name: "fence", Primary: "db3", Generation: 2, Revision: 1}, 1)
	if !errors.Is(err, state.ErrRecordMoved) || !errors.As(err, &ge) || ge.Expected != 1 || ge.Stored != 2 {
		t.Fatalf("stale write: %v", err)
	}
	for _, want := range []string{"generation 2", "not 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, rec, _, _ := c.Observe(ctx); rec == nil || rec.Primary != "db2" || rec.Generation != 2 {
		t.Fatalf("after a stale write the record is %+v, want db2 at generation 2", rec)
	}
	// A record that is not JSON is reported, not overwritten.
	if err := c.client.Set(ctx, c.key("record"), "{broken", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.PutRecordIf(ctx, state.ClusterRecord{Name: "fence", Primary: "db2", Generation: 3, Revision: 2}, 2); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("over a broken record: %v", err)
	}
	if s, _ := c.client.Get(ctx, c.key("record")).Result(); s != "{broken" {
		t.Fatalf("the broken record was overwritten: %q", s)
	}
}

// TestPutRecordIfLostUpdate: two writers read the same record; one
// changes it without moving the generation (a relax of the synchronous
// set), and the other, holding the record read before, is refused
// instead of putting the old synchronous set back unseen.
func TestPutRecordIfLostUpdate(t *testing.T) {
	r := testenv.StartRedis(t)
	c := New(r.Addr, "", 0, "lost")
	defer c.Close()
	ctx := context.Background()
	full := &state.SyncRecord{Standbys: []string{"db2", "db3"}, Count: 1, Mode: "quorum"}
	if err := c.PutRecordIf(ctx, state.ClusterRecord{Name: "lost", Primary: "db1", Generation: 3, Sync: full}, 0); err != nil {
		t.Fatal(err)
	}
	_, a, _, _ := c.Observe(ctx)
	_, b, _, _ := c.Observe(ctx)
	if a == nil || b == nil || a.Revision != 1 {
		t.Fatalf("first record read back: %+v", a)
	}
	relaxed := *a
	relaxed.Sync = &state.SyncRecord{Mode: "quorum", Relaxed: true}
	if err := c.PutRecordIf(ctx, relaxed, 3); err != nil {
		t.Fatalf("relax at the generation and revision read: %v", err)
	}
	stale := *b
	stale.SwitchingFrom, stale.SwitchingTo = "db1", "db2"
	err := c.PutRecordIf(ctx, stale, 3)
	var ge *state.RecordMovedError
	if !errors.Is(err, state.ErrRecordMoved) || !errors.As(err, &ge) || ge.ReadRevision != 1 || ge.StoredRevision != 2 {
		t.Fatalf("a write from the record read before the relax: %v, want refused (revision 1, now 2)", err)
	}
	if !strings.Contains(err.Error(), "written since it was read (revision 1, now 2)") {
		t.Errorf("error %q does not say the record was written since it was read", err)
	}
	_, got, _, _ := c.Observe(ctx)
	if got == nil || got.Sync == nil || !got.Sync.Relaxed || got.Switching() || got.Revision != 2 {
		t.Fatalf("after the refused write the record is %+v, want the relaxed one at revision 2", got)
	}
}

// TestPutRecordIfRace: of N writers expecting the same generation, exactly
// one writes; the stored record is the winner's.
func TestPutRecordIfRace(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	base := New(r.Addr, "", 0, "race")
	defer base.Close()
	if err := base.PutRecord(ctx, state.ClusterRecord{Name: "race", Primary: "db0", Generation: 7}); err != nil {
		t.Fatal(err)
	}
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		c := New(r.Addr, "", 0, "race")
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = c.PutRecordIf(ctx, state.ClusterRecord{Name: "race", Primary: fmt.Sprintf("db%d", i+1), Generation: 8, Revision: 1}, 7)
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("two writers won: %d and %d", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, state.ErrRecordMoved):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	if _, rec, _, _ := base.Observe(ctx); rec == nil || rec.Primary != fmt.Sprintf("db%d", winner+1) || rec.Generation != 8 {
		t.Fatalf("stored %+v, want the winner db%d at 8", rec, winner+1)
	}
}
