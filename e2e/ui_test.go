package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts a headless Chromium for the test and returns a tab's
// context. Chromium runs with --no-sandbox (the tests run as root, where
// its sandbox refuses to start); it is stopped when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: run make setup (apt-get install chromium)")
	}
	// Its profile and TMPDIR are the test's: Chromium leaves its
	// singleton socket directories in TMPDIR after it exits.
	dir := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.Env("TMPDIR="+dir),
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for Chromium to exit
	})
	// Start the browser now, without a deadline (a deadline on the first
	// run would bound the browser's life), and before anything is timed.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs browser steps within d, failing t with what.
func do(t *testing.T, ctx context.Context, d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one browser action that returns a value, within d.
func get[T any](t *testing.T, ctx context.Context, d time.Duration, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// artifactPath is where the test keeps a file for people to look at:
// under $PGHA_ARTIFACTS when set (kept), else in the test's temporary
// directory (removed with it).
func artifactPath(t *testing.T, name string) string {
	dir := os.Getenv("PGHA_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+name)
}

// pageTimes is what the page measured of the failover, in its own clock
// (performance.now(), ms): the click on the Failover button, the preview
// shown, the click that sent the POST, the POST's answer, and the render
// that first showed the new primary.
type pageTimes struct {
	Node     string  `json:"node"`
	Shown    float64 `json:"shown"`
	Click    float64 `json:"click"`
	Preview  float64 `json:"previewed"`
	Submit   float64 `json:"submit"`
	Answered float64 `json:"answered"`
}

// The dashboard in a real browser: every node with its role, then a
// failover triggered from the page (the button, the preview, the token),
// and the new primary shown within 3 s of the click (the issue's
// acceptance). The watcher's own failover is switched off so that the
// page's is what acts: automatic = false, and primary_crash = "failover"
// so that it does not restart the dead primary in place either.
func TestLocalDashboard(t *testing.T) {
	ctx := browser(t)
	c := newCluster(t, "local", 3)
	a := c.enableAPI(false)
	t.Cleanup(func() {
		if t.Failed() {
			pageLog(t, ctx)
		}
	})
	// rejoin = "manual" keeps the old primary's rejoin (which discards
	// what it wrote after the fork) in the pending plan, for the page to
	// mark, until the failback from the page runs it.
	c.setPolicy("maximum_lag = \"64kB\"\nautomatic = false\nprimary_crash = \"failover\"", "rejoin = \"manual\"")
	c.addBlock("  backup {\n    repository  = \"./backups\"\n    compression = \"zstd\"\n  }\n")
	c.mustPgha("apply", "-auto-approve") // takes the first full backup
	c.mustPgha("backup", "-type", "incremental")
	var listed struct {
		Backups []struct{ ID, Type string } `json:"backups"`
	}
	if err := json.Unmarshal([]byte(c.mustPgha("backup", "list", "-json").stdout), &listed); err != nil {
		t.Fatal(err)
	}
	var incr string
	for _, b := range listed.Backups {
		if b.Type == "incremental" {
			incr = b.ID
		}
	}
	if incr == "" {
		t.Fatalf("no incremental backup listed: %+v", listed.Backups)
	}
	c.mustPgha("backup", "verify", incr) // its verify result shows on the page
	w := c.startWatch("w1")
	a.waitUp(t, 30*time.Second)

	visible := func(sel string) chromedp.Action[chromedp.Void] {
		return chromedp.WaitVisible(chromedp.CSS(sel))
	}
	row := func(node, role string) string {
		return fmt.Sprintf(`#nodes-body tr[data-node=%q][data-role=%q]`, node, role)
	}
	do(t, ctx, 30*time.Second, "load the dashboard and see db1 primary, db2 and db3 standbys",
		chromedp.Navigate(a.url("/ui/")),
		visible(row("db1", "primary")),
		visible(row("db2", "standby")),
		visible(row("db3", "standby")),
		visible(`#conn[data-state="live"]`),
		visible(`#plan[data-state="loaded"]`),
	)
	if n := get(t, ctx, 5*time.Second, "count the node rows",
		chromedp.Evaluate[int](`document.querySelectorAll('#nodes-body tr[data-node]').length`)); n != 3 {
		t.Fatalf("the page shows %d node rows, want 3", n)
	}

	// The backup chain: a full and its incremental, one chain on the
	// timeline, each with its sizes and ratio, and the verify result.
	do(t, ctx, 20*time.Second, "see the backup chain",
		visible(`#backups tr[data-backup][data-status="complete"]`),
		visible(`#backup-timeline svg rect[data-backup]`),
		visible(fmt.Sprintf(`#backups tr[data-backup=%q] td[data-verify="passed"]`, incr)))
	chains := get(t, ctx, 5*time.Second, "read the backups", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#backups tr[data-backup]')].map(r => r.dataset.chain + ' ' + r.querySelector('[data-ratio]').dataset.ratio)`))
	if len(chains) != 2 || strings.Fields(chains[0])[0] != strings.Fields(chains[1])[0] || strings.Fields(chains[0])[1] == "" {
		t.Errorf("want a full and its incremental in one chain, with ratios; the page shows %q", chains)
	}

	// The lag chart draws each standby's line from /lag and the status
	// events.
	do(t, ctx, 20*time.Second, "see the lag chart",
		chromedp.WaitReady(chromedp.CSS(`#lag-chart svg path[data-node="db2"]`)),
		chromedp.WaitReady(chromedp.CSS(`#lag-chart svg path[data-node="db3"]`)))

	// A wrong token: the dialog says 401 and nothing changes.
	do(t, ctx, 60*time.Second, "preview a switchover and send it with a wrong token",
		chromedp.Click(chromedp.CSS(`#btn-switchover`)),
		visible(`#op-preview[data-state="loaded"]`),
		visible(`#op-preview li[data-kind="switchover"]`),
		chromedp.WaitEnabled(chromedp.CSS(`#op-confirm`)),
		chromedp.SendKeys(chromedp.CSS(`#op-token`), "not-the-token"),
		chromedp.Click(chromedp.CSS(`#op-confirm`)),
		visible(`#op-error`),
	)
	if msg := get(t, ctx, 5*time.Second, "read the error", chromedp.Text(chromedp.CSS(`#op-error`))); !strings.Contains(msg, "401") {
		t.Errorf("a wrong token: the dialog says %q, want the 401", msg)
	}
	do(t, ctx, 10*time.Second, "cancel", chromedp.Click(chromedp.CSS(`#op-cancel`)), chromedp.WaitNotVisible(chromedp.CSS(`#op-dialog`)))
	if p := c.primary(context.Background()); p != "db1" {
		t.Fatalf("after a switchover with a wrong token the primary is %s, want db1 unchanged", p)
	}
	do(t, ctx, 5*time.Second, "db1 is still shown primary", visible(row("db1", "primary")))

	// The primary dies; the watcher only reports it (policy), and the
	// page shows the verdict.
	mark := w.mark()
	c.killPostmaster("db1")
	w.waitLog(t, mark, "primary lost", map[string]string{"node": "db1"}, 30*time.Second)
	do(t, ctx, 10*time.Second, "the page shows the primary lost", visible(`#verdict[data-status="lost"]`))
	w.waitLog(t, mark, "held by policy", nil, 10*time.Second)

	// Failover from the page: the button, the preview, the token.
	do(t, ctx, 60*time.Second, "click Failover and see its preview",
		chromedp.Click(chromedp.CSS(`#btn-failover`)),
		visible(`#op-preview[data-state="loaded"]`),
		visible(`#op-preview li[data-kind="failover"]`),
		chromedp.WaitEnabled(chromedp.CSS(`#op-confirm`)),
	)
	preview := get(t, ctx, 5*time.Second, "read the preview", chromedp.Text(chromedp.CSS(`#op-preview`)))
	c.noSecret("the failover preview", preview)
	t.Logf("failover preview: %s", screenshot(t, ctx, "preview.png"))
	do(t, ctx, 10*time.Second, "type the token", chromedp.SendKeys(chromedp.CSS(`#op-token`), apiToken))
	// The POST goes with the confirm click; between the Failover click
	// and that one the test only read the preview and typed the token.
	if code := confirm(t, ctx, "failover"); code != 200 {
		t.Fatalf("failover from the page: HTTP %d", code)
	}
	tm := get(t, ctx, 60*time.Second, "wait for the page to show a new primary",
		chromedp.Poll[pageTimes](`(() => {
			const r = document.querySelector('#nodes-body tr[data-role="primary"]:not([data-node="db1"])');
			if (!r) return null;
			const t = window.pgha.timings;
			if (!t.primaryShown || t.primaryShown.nodes !== r.dataset.node) return null;
			return {node: r.dataset.node, shown: t.primaryShown.at, click: t.click, previewed: t.previewed, submit: t.submit, answered: t.answered || 0};
		})()`, chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(55*time.Second)))
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	fromSubmit, fromClick := ms(tm.Shown-tm.Submit), ms(tm.Shown-tm.Click)
	answer := fmt.Sprintf("%d ms after the POST answered, which took %d ms", ms(tm.Shown-tm.Answered).Milliseconds(), ms(tm.Answered-tm.Submit).Milliseconds())
	if tm.Shown < tm.Answered {
		answer = fmt.Sprintf("%d ms before the POST answered (a status event came first; the POST took %d ms)", ms(tm.Answered-tm.Shown).Milliseconds(), ms(tm.Answered-tm.Submit).Milliseconds())
	}
	// The page's own share of the Failover click to the new primary: the
	// preview's fetch and the failover, without the test's screenshot,
	// reading and typing in between (an operator's reading time).
	pageShare := ms(tm.Preview-tm.Click) + fromSubmit
	t.Logf("new primary %s shown %d ms after the confirm click (the POST sent); %d ms after the Failover click less the time the preview stood open (preview %d ms); %d ms after the Failover click all told; %s",
		tm.Node, fromSubmit.Milliseconds(), pageShare.Milliseconds(), ms(tm.Preview-tm.Click).Milliseconds(), fromClick.Milliseconds(), answer)
	if tm.Node != "db2" && tm.Node != "db3" {
		t.Fatalf("new primary %q, want db2 or db3", tm.Node)
	}
	if tm.Preview <= tm.Click || tm.Submit <= tm.Preview || tm.Shown <= tm.Submit {
		t.Fatalf("page timings out of order: %+v", tm)
	}
	if fromSubmit > 3*time.Second {
		t.Errorf("the page showed the new primary %s after the failover was sent; the acceptance is 3 s", fromSubmit)
	}
	if pageShare > 3*time.Second {
		t.Errorf("from the Failover click, the page took %s of its own (preview and failover) to show the new primary; the acceptance is 3 s", pageShare)
	}

	// The outcome is shown, the token stayed out of the URL and the page,
	// and the failover is in the catalog history with its reason.
	do(t, ctx, 10*time.Second, "see the outcome", visible(`#op-outcome[data-outcome="complete"]`))
	do(t, ctx, 20*time.Second, "see the failover in the history", visible(`#history tr[data-kind="failover"]`))
	loc := get(t, ctx, 5*time.Second, "read the URL", chromedp.Location())
	page := get(t, ctx, 5*time.Second, "read the page", chromedp.OuterHTML(chromedp.CSS(`html`)))
	if strings.Contains(loc, apiToken) || strings.Contains(page, apiToken) {
		t.Fatalf("the api token shows in the page or its URL (%s)", loc)
	}
	c.noSecret("the dashboard", page)
	history := get(t, ctx, 5*time.Second, "read the history", chromedp.Text(chromedp.CSS(`#history tr[data-kind="failover"]`)))
	if !strings.Contains(history, "db1") {
		t.Errorf("the failover's history row does not name the lost primary db1: %q", history)
	}
	t.Logf("dashboard screenshot: %s", screenshot(t, ctx, "dashboard.png"))

	// The pending plan now rejoins db1, discarding what it wrote after
	// the fork: the page marks it, and marks it held (rejoin = "manual":
	// the watcher leaves it for pgha apply). The switchover back to the
	// declared db1 is not in the watcher's plan (failback = "manual").
	do(t, ctx, 30*time.Second, "see the pending rejoin marked as discarding data and held",
		visible(`#plan li[data-data-loss="true"][data-kind="standby.rejoin"][data-held="true"]`))
	if txt := get(t, ctx, 5*time.Second, "read the marked action",
		chromedp.Text(chromedp.CSS(`#plan li[data-data-loss="true"]`))); !strings.Contains(txt, "discards data") || !strings.Contains(txt, "db1") ||
		!strings.Contains(txt, "held for pgha apply") {
		t.Errorf("the discarding action reads %q, want db1, \"discards data\" and why it is held", txt)
	}
	if switchbacks := get(t, ctx, 5*time.Second, "count switchovers in the watcher's plan",
		chromedp.Evaluate[int](`document.querySelectorAll('#plan li[data-kind="switchover"]').length`)); switchbacks != 0 {
		t.Errorf("the watcher's plan holds %d switchovers back to db1; with failback = manual it keeps db2", switchbacks)
	}

	// Failback from the page: its preview holds the rejoin, so the
	// dialog asks to accept the loss before it runs; the token is still
	// in the page's memory (not in sessionStorage: "remember" was not
	// ticked).
	do(t, ctx, 60*time.Second, "click Failback and see its preview ask to accept the data loss",
		chromedp.Click(chromedp.CSS(`#btn-failback`)),
		visible(`#op-preview[data-state="loaded"]`),
		visible(`#op-preview li[data-data-loss="true"]`),
		visible(`#op-loss`),
		chromedp.WaitEnabled(chromedp.CSS(`#op-confirm`)),
	)
	if tok := get(t, ctx, 5*time.Second, "read the token field", chromedp.Value(chromedp.CSS(`#op-token`))); tok != apiToken {
		t.Errorf("the token field holds %d characters, want the token kept in memory since the failover", len(tok))
	}
	if stored := get(t, ctx, 5*time.Second, "read sessionStorage", chromedp.Evaluate[*string](`sessionStorage.getItem('pgha.token')`)); stored != nil {
		t.Error("the token is in sessionStorage although \"remember in this tab\" was not ticked")
	}
	do(t, ctx, 10*time.Second, "confirm without accepting the loss",
		chromedp.Click(chromedp.CSS(`#op-confirm`)),
		visible(`#op-error`))
	if msg := get(t, ctx, 5*time.Second, "read the error", chromedp.Text(chromedp.CSS(`#op-error`))); !strings.Contains(msg, "discards data") {
		t.Errorf("confirming a discarding plan without the tick: the dialog says %q", msg)
	}
	if p := c.primary(context.Background()); p != tm.Node {
		t.Fatalf("the failback ran without its data loss accepted: primary %s", p)
	}
	do(t, ctx, 5*time.Second, "accept the data loss", chromedp.Click(chromedp.CSS(`#op-loss-ok`)))
	confirm(t, ctx, "failback")
	do(t, ctx, 10*time.Second, "see the failback's outcome", visible(`#op-outcome[data-op="failback"]`))
	if out := get(t, ctx, 5*time.Second, "read the outcome", chromedp.AttributeValue(chromedp.CSS(`#op-outcome`), "data-outcome")); out.Value != "complete" {
		txt := get(t, ctx, 5*time.Second, "read the outcome", chromedp.Text(chromedp.CSS(`#op-outcome`)))
		t.Fatalf("failback from the page: %s", txt)
	}
	do(t, ctx, 30*time.Second, "see db1 primary again",
		visible(row("db1", "primary")),
		visible(row(tm.Node, "standby")),
	)
	t.Logf("after the failback: %s", screenshot(t, ctx, "failback.png"))
}

// confirm clicks the dialog's Run button and waits for the API's answer;
// a 409 (the cluster lock held: the watcher acting, say a backup
// after the role change) ran nothing, and is tried again, as an
// operator would, a few times. It returns the HTTP status of the last
// answer.
func confirm(t *testing.T, ctx context.Context, what string) int {
	t.Helper()
	for try := 1; ; try++ {
		n := get(t, ctx, 5*time.Second, "count the answers", chromedp.Evaluate[int](`window.pgha.timings.answers.length`))
		do(t, ctx, 10*time.Second, what+": confirm", chromedp.Click(chromedp.CSS(`#op-confirm`)))
		code := get(t, ctx, 120*time.Second, what+": wait for the answer", chromedp.Poll[int](
			fmt.Sprintf(`window.pgha.timings.answers.length > %d ? window.pgha.timings.answers[%d].code : 0`, n, n),
			chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(115*time.Second)))
		if code != 409 || try == 5 {
			return code
		}
		msg := get(t, ctx, 5*time.Second, "read the error", chromedp.Text(chromedp.CSS(`#op-error`)))
		t.Logf("%s: try %d answered 409, again in 1 s: %s", what, try, msg)
		time.Sleep(time.Second)
	}
}

// pageLog logs what the page says, for a failed test: the verdict, the
// dialog's error, the last outcome and the live events.
func pageLog(t *testing.T, ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	texts, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`({
		verdict: document.querySelector('#verdict').innerText,
		error: document.querySelector('#op-error').hidden ? '' : document.querySelector('#op-error').innerText,
		outcome: document.querySelector('#op-outcome').hidden ? '' : document.querySelector('#op-outcome').innerText,
		events: document.querySelector('#events').innerText,
		timings: JSON.stringify(window.pgha && window.pgha.timings),
	})`))
	if err != nil {
		t.Logf("--- the page: %v", err)
		return
	}
	for _, k := range []string{"verdict", "error", "outcome", "timings", "events"} {
		t.Logf("--- the page's %s:\n%s", k, texts[k])
	}
}

// screenshot saves a PNG of the whole page and returns its path.
func screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	png := get(t, ctx, 20*time.Second, "screenshot", chromedp.FullScreenshot(100))
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot %s is not a PNG (%d bytes)", name, len(png))
	}
	p := artifactPath(t, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
