package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/s3test"
)

// secondaryCache is a storage.ipfs.cache for a disco process.
type secondaryCache struct {
	driver map[string]any // the driver's name and parameters
	files  string         // the URL its files are under, by driver path
	served func() int     // the blob GETs answered there, without credentials
}

// caches are the secondary caches the tests run over: a directory served over HTTP as a
// bucket would be, and an S3 bucket on versitygw, under a root directory, that anyone
// may read.
var caches = []struct {
	name string
	new  func(*testing.T) *secondaryCache
}{
	{"filesystem", func(t *testing.T) *secondaryCache {
		dir := t.TempDir()
		var served atomic.Int64
		files := http.FileServer(http.Dir(dir))
		bucket := httptest.NewServer(http.StripPrefix("/bucket", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			served.Add(1)
			files.ServeHTTP(w, r)
		})))
		t.Cleanup(bucket.Close)
		return &secondaryCache{
			driver: map[string]any{"filesystem": map[string]any{"rootdirectory": dir}},
			files:  bucket.URL + "/bucket",
			served: func() int { return int(served.Load()) },
		}
	}},
	{"s3", func(t *testing.T) *secondaryCache {
		s := s3test.Start(t)
		s.AllowAnonymousReads()
		const root = "/disco-cache"
		return &secondaryCache{
			driver: map[string]any{"s3": s.Params(root)},
			files:  s.BucketURL() + root,
			served: s.AnonymousGets,
		}
	}},
}

// yaml configures Disco over the cache, with extra keys under storage.ipfs.
func (c *secondaryCache) yaml(t *testing.T, extra string) string {
	b, err := json.Marshal(c.driver) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("storage: {ipfs: {cache: %s%s}}", b, extra)
}

// TestCacheRedirect runs Disco with a secondary cache and storage.ipfs.redirect to it:
// docker pushes, then pulls with every blob GET answered 307 to the cache, and gets the
// image.
func TestCacheRedirect(t *testing.T) {
	t.Parallel()
	for _, c := range caches {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cache := c.new(t)
			d := startDisco(t, discoOptions{YAML: cache.yaml(t, fmt.Sprintf(", redirect: %s", cache.files))})
			dk := needDocker(t)
			ref := d.Host + "/e2e/cached-" + c.name
			imageID := dk.importRandom(t, ref, 1<<20)
			dgst := dockerPush(t, dk, ref)
			dk.run(t, "rmi", "-f", ref)
			dockerPull(t, dk, ref, dgst, imageID)
			if cache.served() == 0 {
				t.Error("docker got no blob from the cache: it was not redirected there")
			}
		})
	}
}

// TestCacheOnlyDocker runs Disco with no IPFS node: docker pushes and pulls, and the
// image is filed under the CID the original Disco gave it in that mode.
func TestCacheOnlyDocker(t *testing.T) {
	t.Parallel()
	for _, c := range caches {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cache := c.new(t)
			d := startDisco(t, discoOptions{YAML: cache.yaml(t, ", cacheonly: true")})
			dk := needDocker(t)
			ref := d.Host + "/e2e/cacheonly-" + c.name
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
		})
	}
}
