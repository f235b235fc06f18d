package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// The dashboard is served from the binary, complete: its three files
// with their types, nothing fetched from elsewhere (no network beyond
// the watcher is assumed), and every element the script looks up by id
// present in the page.
func TestUIServesDashboard(t *testing.T) {
	srv := httptest.NewServer(uiHandlerAt())
	defer srv.Close()
	get := func(path string) (string, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return resp.Header.Get("Content-Type"), string(b)
	}
	ct, index := get("/ui/")
	if !strings.HasPrefix(ct, "text/html") {
		t.Errorf("/ui/ is %q, want text/html", ct)
	}
	for _, want := range []string{`href="style.css"`, `src="app.js"`, `id="nodes-body"`, `type="password"`} {
		if !strings.Contains(index, want) {
			t.Errorf("index.html lacks %s", want)
		}
	}
	ct, css := get("/ui/style.css")
	if !strings.HasPrefix(ct, "text/css") {
		t.Errorf("style.css is %q", ct)
	}
	ct, js := get("/ui/app.js")
	if !strings.Contains(ct, "javascript") {
		t.Errorf("app.js is %q", ct)
	}
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?//|@import|url\(\s*["']?//|https?://`)
	for name, body := range map[string]string{"index.html": index, "style.css": css, "app.js": js} {
		// The SVG namespace is a name, not a fetch.
		b := strings.ReplaceAll(body, "http://www.w3.org/2000/svg", "")
		if m := external.FindString(b); m != "" {
			t.Errorf("%s refers to an external resource: %q", name, m)
		}
	}
	if regexp.MustCompile(`\.(inner|outer)HTML|insertAdjacentHTML|document\.write`).MatchString(js) {
		t.Error("app.js uses innerHTML: catalog text must go through textContent")
	}
	for _, m := range regexp.MustCompile(`\$\('([\w-]+)'\)`).FindAllStringSubmatch(js, -1) {
		if !strings.Contains(index, `id="`+m[1]+`"`) {
			t.Errorf("app.js looks up #%s, which index.html lacks", m[1])
		}
	}
}

// uiHandlerAt mounts the dashboard as Handler does.
func uiHandlerAt() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /ui/", uiHandler())
	return mux
}
