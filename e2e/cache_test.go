package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/global"
)

// TestCacheRedirect runs Disco with a filesystem cache and storage.ipfs.redirect, the
// cache's directory served over HTTP as a bucket would be: docker pushes, then pulls with
// every blob GET answered 307 to the cache, and gets the image.
func TestCacheRedirect(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var served atomic.Int64
	files := http.FileServer(http.Dir(dir))
	bucket := httptest.NewServer(http.StripPrefix("/bucket", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		files.ServeHTTP(w, r)
	})))
	defer bucket.Close()
	d := startDisco(t, discoOptions{YAML: fmt.Sprintf("storage: {ipfs: {cache: {filesystem: {rootdirectory: %s}}, redirect: %s}}", dir, bucket.URL+"/bucket")})
	dk := needDocker(t)
	ref := d.Host + "/e2e/cached"
	imageID := dk.importRandom(t, ref, 1<<20)
	dgst := dockerPush(t, dk, ref)
	dk.run(t, "rmi", "-f", ref)
	dockerPull(t, dk, ref, dgst, imageID)
	if served.Load() == 0 {
		t.Error("docker got no blob from the cache: it was not redirected there")
	}
}

// TestCacheOnly runs Disco with no IPFS node: docker pushes and pulls, and the image is
// filed under the CID the original Disco gave it in that mode.
func TestCacheOnlyDocker(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := startDisco(t, discoOptions{YAML: fmt.Sprintf("storage: {ipfs: {cache: {filesystem: {rootdirectory: %s}}, cacheonly: true}}", dir)})
	dk := needDocker(t)
	ref := d.Host + "/e2e/cacheonly"
	imageID := dk.importRandom(t, ref, 1<<20)
	dgst := dockerPush(t, dk, ref)
	want, err := global.CacheOnlyCID(digest.Digest(dgst))
	if err != nil {
		t.Fatal(err)
	}
	if c := cidOf(t, d, dgst); c != want.String() {
		t.Errorf("cache-only CID: %s, want the original's %s", c, want)
	}
	dk.run(t, "rmi", "-f", ref)
	dockerPull(t, dk, d.Host+"/"+want.String(), dgst, imageID)
}
