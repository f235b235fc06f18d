package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// S3 is an S3-compatible server started for one test: versitygw (Apache
// 2.0) over a POSIX directory, Root, in which each bucket is a folder and
// each object a file. Tests reach the stored bytes there to corrupt them
// the way a disk would.
type S3 struct {
	Endpoint             string // http://127.0.0.1:PORT
	AccessKey, SecretKey string
	Region               string
	Root                 string
	cmd                  *exec.Cmd
}

// VersityGW finds the versitygw binary: on PATH, else where `make setup`
// installs it ($(go env GOPATH)/bin).
func VersityGW(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = string(trimNL(out))
		}
	}
	if gopath == "" {
		gopath = filepath.Join(os.Getenv("HOME"), "go")
	}
	p := filepath.Join(filepath.SplitList(gopath)[0], "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("versitygw (the S3-compatible server the S3 repository's tests run against) is not on PATH nor at %s: run `make setup` (it builds it with go install)", p)
	}
	return p
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// StartS3 starts versitygw on a free port over a fresh directory, with
// the given buckets made; it is stopped when the test ends.
func StartS3(t testing.TB, buckets ...string) *S3 {
	t.Helper()
	bin := VersityGW(t)
	root := t.TempDir()
	for _, b := range buckets {
		// The posix backend serves every folder of its root as a bucket.
		if err := os.Mkdir(filepath.Join(root, b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := FreePort(t)
	s := &S3{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), AccessKey: "pgha-test", SecretKey: "test-s3-secret-key", Region: "us-east-1", Root: root}
	logf, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--port", "127.0.0.1:"+strconv.Itoa(port), "--quiet", "--region", s.Region, "--health", "/health", "posix", root)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	s.cmd = cmd
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil && len(b) > 0 {
				t.Logf("versitygw log:\n%s", b)
			}
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw on %s did not answer within 15s: %v", s.Endpoint, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
