package cache_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/disctest"
	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/layout"
)

func cacheYAML(dir, extra string) string {
	return fmt.Sprintf("storage: {ipfs: {cache: {filesystem: {rootdirectory: %q}}%s}}\n", dir, extra)
}

// inCache reports whether the filesystem cache at dir holds the driver path p.
func inCache(dir, p string) bool {
	_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p)))
	return err == nil
}

// TestFilesystemCache pushes to a Disco with a filesystem cache: what it stores is in the
// cache as well, the digest and CID repositories too. A Disco with a new, empty IPFS node
// over the same cache serves every image from it; with the cache wiped, images are served
// from IPFS and the cache is filled again.
func TestFilesystemCache(t *testing.T) {
	dir := t.TempDir()
	home := t.TempDir()
	d := disctest.StartIn(t, home, cacheYAML(dir, ""))
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
		if !inCache(dir, p) {
			t.Errorf("the cache lacks %s after the push", p)
		}
	}
	d.Stop()

	// The IPFS side wiped: a new node, the same cache.
	fresh := disctest.Start(t, cacheYAML(dir, ""))
	for _, ref := range []string{"app/x:v1", h.Hex, c} {
		if got := disctest.PullAll(t, fresh.Ref(t, ref)); got != h {
			t.Errorf("%s from the cache alone: %s, want %s", ref, got, h)
		}
	}
	fresh.Stop()

	// The cache wiped: IPFS serves, and the cache is filled again.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	d = disctest.StartIn(t, home, cacheYAML(dir, ""))
	for _, ref := range []string{"app/x:v1", h.Hex, c} {
		if got := disctest.PullAll(t, d.Ref(t, ref)); got != h {
			t.Errorf("%s with the cache wiped: %s, want %s", ref, got, h)
		}
	}
	if !inCache(dir, layout.Repository("app/x")+"/"+layout.TagLink("v1")) {
		t.Error("the cache was not repaired on the pull")
	}
}

// TestRedirect serves blobs by redirecting clients to the cache, here a directory behind
// an HTTP file server: blob GETs answer 307 to the cache's URL, and a client gets the
// image.
func TestRedirect(t *testing.T) {
	dir := t.TempDir()
	files := httptest.NewServer(http.StripPrefix("/bucket", http.FileServer(http.Dir(dir))))
	defer files.Close()
	d := disctest.Start(t, cacheYAML(dir, fmt.Sprintf(", redirect: %q", files.URL+"/bucket")))
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
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, files.URL+"/bucket/docker/registry/v2/blobs/") {
		t.Errorf("blob GET: %s to %q, want 307 to the cache", resp.Status, loc)
	}
	if got := disctest.PullAll(t, d.Ref(t, "app/x:v1")); got != h {
		t.Errorf("pull through the redirects: %s, want %s", got, h)
	}
}

// TestCacheOnly runs with no IPFS node: the cache is the storage, and the CID an image is
// filed under is the original's, made from the manifest digest.
func TestCacheOnly(t *testing.T) {
	dir := t.TempDir()
	d := disctest.Start(t, cacheYAML(dir, ", cacheonly: true"))
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
	if !inCache(dir, layout.Blob(digest.Digest(h.String()))) {
		t.Error("the manifest is not in the cache")
	}
}
