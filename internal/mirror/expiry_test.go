package mirror_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/disctest"
	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/layout"
)

// eventually polls cond every 100ms until it holds, and fails t once within has passed.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// page returns the body of the web page at p.
func page(t *testing.T, d *disctest.Disco, p string) string {
	t.Helper()
	res, err := http.Get(d.URL(p))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (u *upstream) manifestGetsOf(h v1.Hash) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.manifestGets[h.String()]
}

// TestExpiry mirrors an image with a ttl of 2s: it is taken out of the registry and of
// the web page once the ttl is up, and the next pull fetches its manifest from the
// upstream again and publishes it again. Its blobs, which the registry still holds, are
// not fetched again.
func TestExpiry(t *testing.T) {
	u := newUpstream(t, "", "")
	img := randomImage(t, 1<<20, 2)
	h := u.push(t, "up/app:v1", img)
	m := disctest.Start(t, fmt.Sprintf("proxy: {remoteurl: %s, ttl: 2s}", u.URL))
	linked := func() bool {
		ok, err := driver.Exists(context.Background(), m.Store, path.Join(layout.Repository("up/app"), layout.RevisionLink(digest.Digest(h.String()))))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	search := "/ui/search?q=" + h.String()

	fetchedBefore := time.Now()
	if got := disctest.PullAll(t, m.Ref(t, "up/app:v1")); got != h {
		t.Fatalf("pulled up/app:v1 as %s, want %s", got, h)
	}
	waitCID(t, m, h)
	if n := u.manifestGetsOf(h); n != 1 {
		t.Fatalf("the upstream sent the manifest %d times for a pull, want once", n)
	}
	eventually(t, 10*time.Second, "the web page lists up/app:v1 as mirrored", func() bool {
		return strings.Contains(page(t, m, search), ">up/app:v1<")
	})

	eventually(t, 15*time.Second, "the expired manifest taken out of up/app", func() bool { return !linked() })
	if took := time.Since(fetchedBefore); took < 2*time.Second {
		t.Errorf("the manifest expired %s after it was fetched, before its ttl of 2s", took)
	}
	eventually(t, 10*time.Second, "the digest repository removed with it", func() bool {
		res, err := http.Get(m.URL("/v2/" + h.Hex + "/tags/list"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode == http.StatusNotFound
	})
	eventually(t, 10*time.Second, "the web page no longer lists up/app:v1", func() bool {
		return strings.Contains(page(t, m, search), `id="empty"`)
	})

	if got := disctest.PullAll(t, m.Ref(t, "up/app:v1")); got != h {
		t.Fatalf("after it expired, pulled up/app:v1 as %s, want %s", got, h)
	}
	if n := u.manifestGetsOf(h); n != 2 {
		t.Errorf("the upstream sent the manifest %d times for a pull, its expiry and a pull, want twice", n)
	}
	for d, n := range u.gets(t, img) {
		if n != 1 {
			t.Errorf("the upstream sent blob %s %d times, want once: the registry holds it still", d, n)
		}
	}
	waitCID(t, m, h)
}

// TestExpiryWhilePulling pulls a multi-arch index and its images over and over, from two
// clients, through a mirror whose ttl of 1s has them expire several times meanwhile:
// every pull gets the right manifests and blobs.
func TestExpiryWhilePulling(t *testing.T) {
	u := newUpstream(t, "", "")
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: randomImage(t, 256<<10, 2),
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	r, err := name.ParseReference(strings.TrimPrefix(u.URL, "http://")+"/up/multi:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	m := disctest.Start(t, fmt.Sprintf("proxy: {remoteurl: %s, ttl: 1s}", u.URL))
	ref := m.Ref(t, "up/multi:v1")

	stop := time.Now().Add(6 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	pulls := make([]int, 2)
	for i := range 2 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if err := pullIndex(ref, want); err != nil {
					errs <- fmt.Errorf("pull %d of client %d: %w", pulls[i]+1, i, err)
					return
				}
				pulls[i]++
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := u.manifestGetsOf(want); n < 2 {
		t.Errorf("the upstream sent the index %d times in 6s with a ttl of 1s, want it fetched again after it expired", n)
	}
	t.Logf("pulls: %v; the upstream sent the index %d times", pulls, u.manifestGetsOf(want))
}

// pullIndex pulls the index ref names and each of its images, checking every manifest and
// blob against its digest.
func pullIndex(ref name.Reference, want v1.Hash) error {
	idx, err := remote.Index(ref)
	if err != nil {
		return err
	}
	if got, err := idx.Digest(); err != nil || got != want {
		return fmt.Errorf("index %s (%v), want %s", got, err, want)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range im.Manifests {
		img, err := remote.Image(ref.Context().Digest(desc.Digest.String()))
		if err != nil {
			return err
		}
		if got, err := img.Digest(); err != nil || got != desc.Digest {
			return fmt.Errorf("image %s (%v), want %s", got, err, desc.Digest)
		}
		if _, err := img.RawConfigFile(); err != nil {
			return fmt.Errorf("config of %s: %w", desc.Digest, err)
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			rc, err := l.Compressed() // checks the digest as it reads
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return fmt.Errorf("layer of %s: %w", desc.Digest, err)
			}
		}
	}
	return nil
}
