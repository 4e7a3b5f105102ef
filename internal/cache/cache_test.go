package cache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/disctest"
	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/layout"
	"github.com/discoregistry/disco/internal/s3test"
)

// TestMain runs the tests without AWS_CA_BUNDLE, for the reason s3test.Start gives: they
// start Discos over s3 caches one after another, while the last one's repairs may still
// run. The S3 service they use is plain HTTP.
func TestMain(m *testing.M) {
	os.Unsetenv("AWS_CA_BUNDLE")
	os.Exit(m.Run())
}

// backend is a secondary cache the tests run Disco over.
type backend struct {
	driver map[string]any    // storage.ipfs.cache: the driver's name and parameters
	has    func(string) bool // reports whether the cache holds a driver path
	wipe   func()            // empties the cache
	files  string            // the URL the cache's files are under, by driver path
}

// backends are the caches every test runs over: a directory, and an S3 bucket on
// versitygw under a root directory.
var backends = []struct {
	name string
	new  func(*testing.T) *backend
}{
	{"filesystem", filesystemBackend},
	{"s3", s3Backend},
}

func forEachBackend(t *testing.T, f func(*testing.T, *backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.new(t)) })
	}
}

func filesystemBackend(t *testing.T) *backend {
	dir := t.TempDir()
	srv := httptest.NewServer(http.StripPrefix("/bucket", http.FileServer(http.Dir(dir))))
	t.Cleanup(srv.Close)
	return &backend{
		driver: map[string]any{"filesystem": map[string]any{"rootdirectory": dir}},
		has: func(p string) bool {
			_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p)))
			return err == nil
		},
		wipe: func() {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		},
		files: srv.URL + "/bucket",
	}
}

func s3Backend(t *testing.T) *backend {
	s := s3test.Start(t)
	const root = "/disco-cache"
	s.AllowAnonymousReads() // as a bucket clients are redirected to allows
	return &backend{
		driver: map[string]any{"s3": s.Params(root)},
		has:    func(p string) bool { return s.Has(strings.TrimPrefix(root+p, "/")) },
		wipe:   s.Empty,
		files:  s.BucketURL() + root,
	}
}

// yaml is the configuration of a Disco over the cache, with extra keys under
// storage.ipfs.
func (b *backend) yaml(t *testing.T, extra string) string {
	d, err := json.Marshal(b.driver) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("storage: {ipfs: {cache: %s%s}}\n", d, extra)
}

// TestCache pushes to a Disco with a secondary cache: what it stores is in the cache as
// well, the digest and CID repositories too. A Disco with a new, empty IPFS node over the
// same cache serves every image from it; with the cache wiped, images are served from
// IPFS and the cache is filled again.
func TestCache(t *testing.T) { forEachBackend(t, testCache) }

func testCache(t *testing.T, b *backend) {
	home := t.TempDir()
	d := disctest.StartIn(t, home, b.yaml(t, ""))
	img, _ := random.Image(3<<20, 2)
	h := d.Push(t, "app/x:v1", img)
	c := d.CIDOf(t, h)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	for _, p := range []string{
		layout.Blob(digest.Digest(ld.String())),
		layout.Blob(digest.Digest(h.String())),
		layout.Repository("app/x") + "/" + layout.TagLink("v1"),
		layout.Repository(c) + "/disco.json",
		layout.Repository(h.Hex) + "/" + layout.TagLink(c),
	} {
		if !b.has(p) {
			t.Errorf("the cache lacks %s after the push", p)
		}
	}
	d.Stop()

	// The IPFS side wiped: a new node, the same cache.
	fresh := disctest.Start(t, b.yaml(t, ""))
	for _, ref := range []string{"app/x:v1", h.Hex, c} {
		if got := disctest.PullAll(t, fresh.Ref(t, ref)); got != h {
			t.Errorf("%s from the cache alone: %s, want %s", ref, got, h)
		}
	}
	fresh.Stop()

	// The cache wiped: IPFS serves, and the cache is filled again.
	b.wipe()
	d = disctest.StartIn(t, home, b.yaml(t, ""))
	for _, ref := range []string{"app/x:v1", h.Hex, c} {
		if got := disctest.PullAll(t, d.Ref(t, ref)); got != h {
			t.Errorf("%s with the cache wiped: %s, want %s", ref, got, h)
		}
	}
	if !b.has(layout.Repository("app/x") + "/" + layout.TagLink("v1")) {
		t.Error("the cache was not repaired on the pull")
	}
	// Blobs are repaired in the background.
	blob := layout.Blob(digest.Digest(ld.String()))
	for deadline := time.Now().Add(30 * time.Second); !b.has(blob); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the cache still lacks %s 30s after the pull", blob)
		}
	}
}

// TestRedirect serves blobs by redirecting clients to the cache, a directory behind an
// HTTP file server or a bucket that allows anonymous reads: blob GETs answer 307 to the
// cache's URL, and a client gets the image.
func TestRedirect(t *testing.T) { forEachBackend(t, testRedirect) }

func testRedirect(t *testing.T, b *backend) {
	d := disctest.Start(t, b.yaml(t, fmt.Sprintf(", redirect: %q", b.files)))
	img, _ := random.Image(1<<20, 1)
	h := d.Push(t, "app/x:v1", img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(d.URL("/v2/app/x/blobs/" + ld.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, b.files+"/docker/registry/v2/blobs/") {
		t.Errorf("blob GET: %s to %q, want 307 to the cache", resp.Status, loc)
	}
	size, _ := layers[0].Size()
	resp, err = http.Head(d.URL("/v2/app/x/blobs/" + ld.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != size || resp.Request.URL.String() == d.URL("/v2/app/x/blobs/"+ld.String()) {
		t.Errorf("blob HEAD, redirects followed: %s, %d bytes from %s, want 200, %d bytes from the cache", resp.Status, resp.ContentLength, resp.Request.URL, size)
	}
	if got := disctest.PullAll(t, d.Ref(t, "app/x:v1")); got != h {
		t.Errorf("pull through the redirects: %s, want %s", got, h)
	}
}

// TestCacheOnly runs with no IPFS node: the cache is the storage, and the CID an image is
// filed under is the original's, made from the manifest digest.
func TestCacheOnly(t *testing.T) { forEachBackend(t, testCacheOnly) }

func testCacheOnly(t *testing.T, b *backend) {
	d := disctest.Start(t, b.yaml(t, ", cacheonly: true"))
	if d.Node != nil {
		t.Fatal("a cache-only Disco has an IPFS node")
	}
	img, _ := random.Image(1<<20, 2)
	h := d.Push(t, "app/x:v1", img)
	want, err := global.CacheOnlyCID(digest.Digest(h.String()))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.CIDOf(t, h); got != want.String() {
		t.Errorf("the CID of a cache-only push: %s, want %s", got, want)
	}
	for _, ref := range []string{"app/x:v1", h.Hex, want.String()} {
		if got := disctest.PullAll(t, d.Ref(t, ref)); got != h {
			t.Errorf("%s: %s, want %s", ref, got, h)
		}
	}
	if !b.has(layout.Blob(digest.Digest(h.String()))) {
		t.Error("the manifest is not in the cache")
	}

	// Uploads in progress are in the cache too: an upload in several requests.
	img, _ = random.Image(3<<20, 1)
	disctest.PushChunked(t, d, "app/chunked", "v1", img, 1<<20)
	h, _ = img.Digest()
	if got := disctest.PullAll(t, d.Ref(t, "app/chunked:v1")); got != h {
		t.Errorf("an image pushed in chunks: %s, want %s", got, h)
	}
}

// TestCacheDown pulls from a Disco whose cache, an S3 bucket, is down: IPFS answers, and
// soon, whether the cache refuses connections or takes them and hangs.
func TestCacheDown(t *testing.T) {
	for _, tt := range []struct {
		name string
		down func(*s3test.Server)
	}{
		{"stopped", (*s3test.Server).Stop},
		{"hanging", (*s3test.Server).Pause},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := s3test.Start(t)
			b := &backend{driver: map[string]any{"s3": s.Params("")}}
			d := disctest.Start(t, b.yaml(t, ""))
			img, _ := random.Image(1<<20, 4)
			h := d.Push(t, "app/x:v1", img)
			tt.down(s)
			// From IPFS alone the pull takes a second; each of its reads waiting for the
			// cache to fail, or hanging on it, it takes a minute, or for ever.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := pull(ctx, d.Ref(t, "app/x:v1"))
			if err != nil || got != h {
				t.Errorf("pull with the cache %s: %s, %v; want %s within 30s", tt.name, got, err, h)
			}
		})
	}
}

// pull pulls ref and reads every layer, checking digests, within ctx.
func pull(ctx context.Context, ref name.Reference) (v1.Hash, error) {
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return v1.Hash{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range layers {
		rc, err := l.Compressed() // verifies the digest as it reads
		if err != nil {
			return v1.Hash{}, err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return v1.Hash{}, err
		}
	}
	return img.Digest()
}
