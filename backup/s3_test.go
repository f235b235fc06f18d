package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/pgha/pgha/internal/testenv"
)

func openTestS3(t *testing.T, partSize uint64) (*S3, *testenv.S3) {
	t.Helper()
	srv := testenv.StartS3(t, "pgha")
	st, err := OpenS3("s3://pgha/repo/one", S3Options{Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PartSize: partSize})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st, srv
}

// TestS3Store: the Store contract against a real S3 server (versitygw):
// objects under the location's prefix, listed sorted under a folder,
// read back, deleted idempotently, a missing one fs.ErrNotExist, and no
// name climbs out of the prefix.
func TestS3Store(t *testing.T) {
	ctx := context.Background()
	st, srv := openTestS3(t, 0)
	put := func(name, content string) error {
		return st.Put(ctx, name, func(w io.Writer) error { _, err := io.WriteString(w, content); return err })
	}
	for _, n := range []string{"c/b2/base.tar", "c/b1/manifest.json", "cd/other", "c/wal/0000000100000000/000000010000000000000001.zst"} {
		if err := put(n, "data of "+n); err != nil {
			t.Fatal(err)
		}
	}
	names, err := st.List(ctx, "c")
	want := []string{"c/b1/manifest.json", "c/b2/base.tar", "c/wal/0000000100000000/000000010000000000000001.zst"}
	if err != nil || !slices.Equal(names, want) {
		t.Fatalf("list c: %v (%v), want %v", names, err, want)
	}
	if names, err := st.List(ctx, "c/wal/"); err != nil || len(names) != 1 {
		t.Fatalf("list c/wal/: %v (%v)", names, err)
	}
	r, err := st.Get(ctx, "c/b2/base.tar")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(got) != "data of c/b2/base.tar" {
		t.Fatalf("get: %q (%v)", got, err)
	}
	if _, ok := r.(*checked); !ok {
		t.Errorf("the server kept no full-object CRC32C of a Put object: Get verified nothing (%T)", r)
	}
	if _, err := st.Get(ctx, "c/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("get of a missing object: %v, want fs.ErrNotExist", err)
	}
	if err := st.Delete(ctx, "c/b2/base.tar"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "c/b2/base.tar"); err != nil {
		t.Fatalf("a second delete: %v", err)
	}
	if names, _ := st.List(ctx, "nothing-here"); len(names) != 0 {
		t.Fatalf("list of a missing prefix: %v", names)
	}
	if err := put("../../escape", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(srv.Root, "pgha", "repo", "one", "escape")); err != nil {
		t.Fatalf("../../escape was not kept under the prefix: %v", err)
	}
	if strings.Contains(st.String(), srv.SecretKey) || strings.Contains(st.String(), srv.AccessKey) {
		t.Fatalf("the store's name shows a credential: %s", st)
	}
}

// TestS3Multipart: a 23 MiB object with 5 MiB parts goes up as a
// multipart upload of 5 parts whose whole-object CRC32C the server
// keeps, and reads back byte for byte.
func TestS3Multipart(t *testing.T) {
	ctx := context.Background()
	st, _ := openTestS3(t, MinPartSize)
	data := make([]byte, 23<<20+12345)
	rand.Read(data)
	err := st.Put(ctx, "c/big/base.tar", func(w io.Writer) error {
		for off := 0; off < len(data); off += 100_000 { // a stream's writes, far below a part
			if _, err := w.Write(data[off:min(off+100_000, len(data))]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Client().StatObject(ctx, "pgha", "repo/one/c/big/base.tar", minio.StatObjectOptions{Checksum: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stored %d bytes, ETag %s, CRC32C %s (%s)", info.Size, info.ETag, info.ChecksumCRC32C, info.ChecksumMode)
	if !strings.HasSuffix(info.ETag, "-5") {
		t.Errorf("ETag %q: want a multipart upload of 5 parts (-5)", info.ETag)
	}
	if info.Size != int64(len(data)) || info.ChecksumCRC32C == "" {
		t.Errorf("size %d, CRC32C %q", info.Size, info.ChecksumCRC32C)
	}
	r, err := st.Get(ctx, "c/big/base.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), equal %v", len(got), err, bytes.Equal(got, data))
	}
}

// TestS3AbortedPut: a fill that fails, after several parts went up or
// before the first was full, leaves no object and no upload behind.
func TestS3AbortedPut(t *testing.T) {
	ctx := context.Background()
	st, _ := openTestS3(t, MinPartSize)
	boom := errors.New("stream broke")
	for _, n := range []int{100, 12 << 20} {
		err := st.Put(ctx, "c/b3/base.tar", func(w io.Writer) error {
			chunk := make([]byte, 64<<10)
			for written := 0; written < n; written += len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return err
				}
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("a failed fill of %d bytes: %v", n, err)
		}
	}
	if names, err := st.List(ctx, "c"); err != nil || len(names) != 0 {
		t.Fatalf("a failed Put is listed: %v (%v)", names, err)
	}
	for u := range st.Client().ListIncompleteUploads(ctx, "pgha", "repo/", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		t.Errorf("a failed Put left the multipart upload %s of %s", u.UploadID, u.Key)
	}
}

// TestS3Corruption: bytes changed where the server keeps them (its
// POSIX directory, as a bad disk would) are caught by Get's CRC32C
// check, for a single-PUT object and a multipart one; backup.Open's
// manifest checksum would catch them too, but later and only for
// backups.
func TestS3Corruption(t *testing.T) {
	ctx := context.Background()
	st, srv := openTestS3(t, MinPartSize)
	for _, size := range []int{1 << 20, 11 << 20} {
		data := make([]byte, size)
		rand.Read(data)
		name := "c/x/obj"
		if err := st.Put(ctx, name, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(srv.Root, "pgha", "repo", "one", "c", "x", "obj")
		f, err := os.OpenFile(file, os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("the server's file of the object: %v", err)
		}
		b := []byte{0}
		f.ReadAt(b, int64(size/2))
		b[0] ^= 0xff
		if _, err := f.WriteAt(b, int64(size/2)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		r, err := st.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(r)
		r.Close()
		if !errors.Is(err, ErrChecksum) {
			t.Fatalf("a %d-byte object with a flipped byte read back with %v, want ErrChecksum", size, err)
		}
		t.Logf("%d bytes: %v", size, err)
	}
}

// TestS3ServerChecks: the server refuses a PUT whose body does not match
// the CRC32C sent with it, so a Put's checksum is checked, not only kept.
func TestS3ServerChecks(t *testing.T) {
	ctx := context.Background()
	st, _ := openTestS3(t, 0)
	body := []byte("what was meant")
	_, err := st.Client().PutObject(ctx, "pgha", "repo/one/c/bad", bytes.NewReader([]byte("what arrived")), 12,
		minio.PutObjectOptions{UserMetadata: map[string]string{"x-amz-checksum-crc32c": crc32c(body)}})
	if err == nil {
		t.Fatal("the server kept an object whose CRC32C does not match")
	}
	t.Logf("refused: %v", err)
	if names, _ := st.List(ctx, "c"); len(names) != 0 {
		t.Fatalf("listed: %v", names)
	}
}

// TestS3WrongKey: a wrong secret key fails every operation with the
// server's refusal, and no error repeats the key.
func TestS3WrongKey(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartS3(t, "pgha")
	const wrong = "not-the-secret-key-4711"
	st, err := OpenS3("s3://pgha/x", S3Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: wrong})
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	errs = append(errs, st.Put(ctx, "a", func(w io.Writer) error { _, err := io.WriteString(w, "x"); return err }))
	_, err = st.Get(ctx, "a")
	errs = append(errs, err)
	_, err = st.List(ctx, "")
	errs = append(errs, err, st.Delete(ctx, "a"), st.Check(ctx))
	for i, err := range errs {
		if err == nil {
			t.Fatalf("operation %d succeeded with a wrong secret key", i)
		}
		if strings.Contains(err.Error(), wrong) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), wrong) {
			t.Fatalf("an error shows the secret key: %v", err)
		}
	}
	t.Logf("put with a wrong key: %v", errs[0])
}
