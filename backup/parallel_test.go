package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// TestParallelRoundTrip: what the parallel compressors write reads back
// byte for byte with a plain stream reader, whatever the write sizes and
// however many chunks, in order.
func TestParallelRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, chunkSize - 1, chunkSize, 3*chunkSize + 12345} {
		var rows bytes.Buffer // compressible, not constant: table-like rows
		for rows.Len() < size {
			fmt.Fprintf(&rows, "%d|account %d|balance %d\n", rows.Len(), rng.IntN(1000), rng.IntN(100000))
		}
		src := rows.Bytes()[:size]
		for _, kind := range []string{"gzip", "zstd"} {
			t.Run(fmt.Sprintf("%s/%d", kind, size), func(t *testing.T) {
				var out bytes.Buffer
				w, err := compressor(&out, kind, 0)
				if err != nil {
					t.Fatal(err)
				}
				for rest := src; len(rest) > 0; {
					n := min(len(rest), 1+rng.IntN(1<<20))
					if _, err := w.Write(rest[:n]); err != nil {
						t.Fatal(err)
					}
					rest = rest[n:]
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if out.Len() >= size && size > 1000 {
					t.Errorf("%d bytes compressed to %d", size, out.Len())
				}
				var r io.Reader
				if kind == "gzip" {
					zr, err := gzip.NewReader(&out)
					if err != nil {
						t.Fatal(err)
					}
					r = zr
				} else {
					zr, err := zstd.NewReader(&out)
					if err != nil {
						t.Fatal(err)
					}
					defer zr.Close()
					r = zr
				}
				got, err := io.ReadAll(r)
				if err != nil || !bytes.Equal(got, src) {
					t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, size)
				}
			})
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n--; f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// TestParallelWriteError: a failing destination fails the backup.
func TestParallelWriteError(t *testing.T) {
	w, _ := compressor(&failWriter{n: 1}, "zstd", 0)
	src := make([]byte, 5*chunkSize)
	cr := rand.NewChaCha8([32]byte{3, 4})
	cr.Read(src)
	var err error
	for i := 0; i < 5 && err == nil; i++ {
		_, err = w.Write(src[i*chunkSize : (i+1)*chunkSize])
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil || err.Error() != "disk full" {
		t.Fatalf("error %v, want disk full", err)
	}
}
