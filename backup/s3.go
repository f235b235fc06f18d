package backup

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options say how to reach an S3-compatible repository. SecretKey is
// handed to the client and never printed: S3's String names the bucket
// and prefix only.
type S3Options struct {
	// Endpoint is the server's URL, http:// or https:// (host and port,
	// no path); empty means AWS (https://s3.amazonaws.com).
	Endpoint  string
	Region    string // default us-east-1
	AccessKey string
	SecretKey string
	// CAFile is a PEM file of the CAs an https endpoint's certificate is
	// checked against, beside the system's (a private server's own CA).
	CAFile string
	// PartSize is the size of a multipart upload's parts; 0 is
	// DefaultPartSize. S3 allows 10,000 parts and 5 MiB at least.
	PartSize uint64
}

// DefaultPartSize is a multipart upload's part size: 10,000 parts of
// 16 MiB make a 156 GiB object, and an upload holds at most
// s3Streams+1 parts in memory (80 MiB), whatever the backup's size.
const DefaultPartSize = 16 << 20

// MinPartSize is the smallest part S3 accepts (all but the last).
const MinPartSize = 5 << 20

// s3Streams is how many parts of one object upload at once: a backup's
// stream goes on filling the next part while the last one travels.
const s3Streams = 4

// S3 is a Store in a bucket of an S3-compatible object store, under a
// prefix. Put streams through a multipart upload with a CRC32C of the
// whole object that the server checks before it completes the upload,
// and Get checks the bytes it returns against that checksum.
//
// The client is minio-go: one module with few dependencies that streams
// objects of unknown size as multipart uploads (fixed part buffers,
// several parts in flight), computes per-part and full-object CRC32C
// checksums, signs each part's SHA-256, and aborts an upload that
// failed. aws-sdk-go-v2 needs its upload manager and a dozen modules for
// the same.
type S3 struct {
	client   *minio.Client
	bucket   string
	prefix   string // "" or ending in "/"
	partSize uint64
	loc      string // s3://bucket/prefix, for messages

	// listed keeps the times of the objects the last List saw: a
	// point-in-time restore asks Modified of every archived segment
	// right after listing them, which would otherwise be a HEAD each.
	mu     sync.Mutex
	listed map[string]time.Time
}

// IsS3 reports whether a repository location names an S3 bucket.
func IsS3(repo string) bool { return strings.HasPrefix(repo, "s3://") }

// ParseS3 splits s3://bucket/prefix into the bucket and the prefix
// (without slashes around it).
func ParseS3(repo string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(repo, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3:// location", repo)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	prefix = strings.Trim(prefix, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%q names no bucket: write s3://BUCKET/PREFIX", repo)
	}
	if clean := path.Clean("/" + prefix); prefix != "" && clean[1:] != prefix {
		return "", "", fmt.Errorf("%q: the prefix %q is not a clean path", repo, prefix)
	}
	return bucket, prefix, nil
}

// OpenS3 makes the store of an s3://bucket/prefix location. It does not
// contact the server: the first operation does.
func OpenS3(repo string, o S3Options) (*S3, error) {
	bucket, prefix, err := ParseS3(repo)
	if err != nil {
		return nil, err
	}
	host, secure := "s3.amazonaws.com", true
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
			return nil, fmt.Errorf("s3 endpoint %q is not http(s)://host[:port]", o.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3 ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3 ca_file %s holds no PEM certificate", o.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	region := o.Region
	if region == "" {
		region = "us-east-1"
	}
	c, err := minio.New(host, &minio.Options{
		Creds:     credentials.NewStaticV4(o.AccessKey, o.SecretKey, ""),
		Secure:    secure,
		Region:    region,
		Transport: tr,
		// Checksums travel as trailers of streamed parts: the server checks
		// each part as it arrives without the client reading it twice.
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", o.Endpoint, err)
	}
	ps := o.PartSize
	if ps == 0 {
		ps = DefaultPartSize
	}
	if ps < MinPartSize {
		return nil, fmt.Errorf("s3 part size %d is below S3's minimum of 5 MiB", ps)
	}
	if prefix != "" {
		prefix += "/"
	}
	return &S3{client: c, bucket: bucket, prefix: prefix, partSize: ps, loc: "s3://" + bucket + "/" + prefix}, nil
}

// String names the location, never the credentials.
func (s *S3) String() string { return strings.TrimSuffix(s.loc, "/") }

// Bucket and Prefix say where the objects are, for a check that lists
// the bucket itself.
func (s *S3) Bucket() string { return s.bucket }

// Client is the S3 client, for tests that look at the bucket directly.
func (s *S3) Client() *minio.Client { return s.client }

func (s *S3) key(name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" || strings.Contains(name, "\\") {
		return "", fmt.Errorf("bad object name %q", name)
	}
	return s.prefix + clean[1:], nil
}

// Put buffers up to one part: an object that fits (a manifest, the
// archive's status, a partial segment) goes in one PUT with its CRC32C;
// a longer one streams through a multipart upload whose parts carry
// their CRC32C and whose completion the server checks against the
// whole object's. Either way it appears only whole, and a multipart
// upload that fails, or whose fill fails, is aborted.
func (s *S3) Put(ctx context.Context, name string, fill func(io.Writer) error) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	opts := minio.PutObjectOptions{
		Checksum:              minio.ChecksumFullObjectCRC32C,
		PartSize:              s.partSize,
		NumThreads:            s3Streams,
		ConcurrentStreamParts: true,
		ContentType:           "application/octet-stream",
	}
	w := &spill{limit: int(s.partSize)}
	w.start = func(first []byte) {
		pr, pw := io.Pipe()
		w.pw, w.done = pw, make(chan error, 1)
		go func() {
			_, err := s.client.PutObject(ctx, s.bucket, key, io.MultiReader(bytes.NewReader(first), pr), -1, opts)
			pr.CloseWithError(errors.Join(err, errUploadEnded)) // a fill still writing stops
			w.done <- err
		}()
	}
	ferr := fill(w)
	if w.pw == nil { // it fit in one part
		if ferr != nil {
			return ferr
		}
		// The CRC32C goes as a header the server checks the body against
		// (minio-go's trailer for a single PUT is one versitygw refuses).
		opts.Checksum = minio.ChecksumNone
		opts.UserMetadata = map[string]string{"x-amz-checksum-crc32c": crc32c(w.buf)}
		_, err := s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(w.buf), int64(len(w.buf)), opts)
		if err != nil {
			return fmt.Errorf("put %s/%s: %w", s, name, err)
		}
		return nil
	}
	if ferr != nil {
		// The upload reads this error, aborts, and returns.
		w.pw.CloseWithError(ferr)
		uerr := <-w.done
		s.abortLeft(key)
		if uerr != nil && errors.Is(ferr, errUploadEnded) {
			return fmt.Errorf("put %s/%s: %w", s, name, uerr) // the fill failed because the upload did
		}
		return ferr
	}
	w.pw.Close()
	if err := <-w.done; err != nil {
		s.abortLeft(key)
		return fmt.Errorf("put %s/%s: %w", s, name, err)
	}
	return nil
}

// abortLeft aborts what is left of a failed multipart upload of key.
// minio-go aborts it already, but a part still being received when the
// abort arrives can leave the upload behind on some servers (seen with
// versitygw): a second look costs one listing, after a failure only.
func (s *S3) abortLeft(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = s.client.RemoveIncompleteUpload(ctx, s.bucket, key)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is S3's x-amz-checksum-crc32c of b: the big-endian CRC32C,
// base64.
func crc32c(b []byte) string {
	s := crc32.Checksum(b, castagnoli)
	return base64.StdEncoding.EncodeToString([]byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)})
}

var errUploadEnded = errors.New("the upload ended")

// spill holds what is written until it exceeds limit, then hands it to
// start and pipes the rest.
type spill struct {
	limit int
	buf   []byte
	start func(first []byte)
	pw    *io.PipeWriter
	done  chan error
}

func (w *spill) Write(p []byte) (int, error) {
	if w.pw != nil {
		return w.pw.Write(p)
	}
	if len(w.buf)+len(p) <= w.limit {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	w.start(w.buf)
	w.buf = nil
	return w.pw.Write(p)
}

// Abandon aborts the multipart uploads a crashed writer of name left
// (invisible, but stored and billed until aborted).
func (s *S3) Abandon(name string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	if err := s.client.RemoveIncompleteUpload(context.Background(), s.bucket, key); err != nil && !notFound(err) {
		return fmt.Errorf("abort what a crashed writer left of %s/%s: %w", s, name, err)
	}
	return nil
}

// Get opens an object. When the server keeps a full-object CRC32C (every
// object Put stores), the reader checks the bytes against it and fails
// at the end with ErrChecksum if they differ: a Get that reads to EOF
// without an error read what was stored.
func (s *S3) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, err
	}
	// The checksum is asked for by header, not minio-go's Checksum
	// option: checked below fails with ErrChecksum, which callers test
	// for, where minio-go's own check returns an untyped error.
	var opts minio.GetObjectOptions
	opts.Set("x-amz-checksum-mode", "ENABLED")
	obj, err := s.client.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", s, name, err)
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		if notFound(err) {
			return nil, fmt.Errorf("get %s/%s: %w", s, name, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("get %s/%s: %w", s, name, err)
	}
	want := info.ChecksumCRC32C
	if want == "" || strings.Contains(want, "-") { // none, or a composite of parts
		return obj, nil
	}
	return &checked{r: obj, h: crc32.New(castagnoli), want: want, size: info.Size}, nil
}

// checked reads an object through its checksum. Its errors do not name
// the object: its reader's caller does, as for a file's.
type checked struct {
	r    io.ReadCloser
	h    hash.Hash32
	want string
	size int64
	n    int64
}

func (c *checked) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if errors.Is(err, io.EOF) {
		if got := base64.StdEncoding.EncodeToString(c.h.Sum(nil)); got != c.want {
			return n, fmt.Errorf("%w (the store's CRC32C %s, the bytes read %s)", ErrChecksum, c.want, got)
		}
		if c.n != c.size {
			return n, fmt.Errorf("read %d bytes of %d", c.n, c.size)
		}
	}
	return n, err
}

func (c *checked) Close() error { return c.r.Close() }

// List returns the names under prefix (a folder of names: "c" lists
// "c/...", not "cd/..."), sorted.
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	p := s.prefix
	if clean := strings.Trim(path.Clean("/"+prefix), "/"); clean != "" {
		p += clean + "/"
	}
	var out []string
	times := map[string]time.Time{}
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: p, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %s/%s: %w", s, prefix, o.Err)
		}
		name := strings.TrimPrefix(o.Key, s.prefix)
		out = append(out, name)
		times[name] = o.LastModified
	}
	sort.Strings(out)
	s.mu.Lock()
	s.listed = times
	s.mu.Unlock()
	return out, nil
}

// Delete removes an object; a missing one is not an error.
func (s *S3) Delete(ctx context.Context, name string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil && !notFound(err) {
		return fmt.Errorf("delete %s/%s: %w", s, name, err)
	}
	return nil
}

// Modified is when the object was stored, as the last List saw it, or
// as the server says now.
func (s *S3) Modified(name string) (time.Time, error) {
	s.mu.Lock()
	t, ok := s.listed[name]
	s.mu.Unlock()
	if ok {
		return t, nil
	}
	key, err := s.key(name)
	if err != nil {
		return time.Time{}, err
	}
	info, err := s.client.StatObject(context.Background(), s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if notFound(err) {
			return time.Time{}, fmt.Errorf("stat %s/%s: %w", s, name, fs.ErrNotExist)
		}
		return time.Time{}, fmt.Errorf("stat %s/%s: %w", s, name, err)
	}
	return info.LastModified, nil
}

// Check makes sure the bucket exists and the credentials reach it.
func (s *S3) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3 bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("s3 bucket %s does not exist: create it first", s.bucket)
	}
	return nil
}

func notFound(err error) bool {
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey, minio.NoSuchUpload, "NotFound":
		return true
	}
	return minio.ToErrorResponse(err).StatusCode == http.StatusNotFound && minio.ToErrorResponse(err).Code != minio.NoSuchBucket
}
