package mirror_test

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/discoregistry/disco/internal/disctest"
)

// The tests run one at a time, each starting its Discos before any request: Kubo sets
// package variables of boxo's unixfs as a node starts (core/node.IPFS), which races with
// the MFS work of nodes already serving in the same process.

// upstream is a registry to mirror, in memory, that counts the blob GETs it answers.
type upstream struct {
	*httptest.Server
	user, password string
	reg            http.Handler // the registry behind the credentials

	mu           sync.Mutex
	blobGets     map[string]int // by digest
	manifestGets map[string]int // by digest or tag
	requests     []upstreamRequest
	delay        time.Duration // before every answer
	blobsAt      string        // if set, the base URL blob GETs are redirected to, as to a CDN
}

// upstreamRequest is a request the upstream got.
type upstreamRequest struct {
	method, path string
	authorized   bool // it came with an Authorization header
}

func newUpstream(t *testing.T, user, password string) *upstream {
	t.Helper()
	u := &upstream{user: user, password: password, blobGets: map[string]int{}, manifestGets: map[string]int{}}
	u.reg = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		delay, blobsAt := u.delay, u.blobsAt
		last := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		isBlob := strings.Contains(r.URL.Path, "/blobs/sha256:")
		switch {
		case r.Method == http.MethodGet && isBlob:
			u.blobGets[last]++
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/"):
			u.manifestGets[last]++
		}
		u.requests = append(u.requests, upstreamRequest{r.Method, r.URL.Path, r.Header.Get("Authorization") != ""})
		u.mu.Unlock()
		time.Sleep(delay)
		if user, password, _ := r.BasicAuth(); u.user != "" && (user != u.user || password != u.password) {
			w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if blobsAt != "" && r.Method == http.MethodGet && isBlob {
			http.Redirect(w, r, blobsAt+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		u.reg.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) push(t *testing.T, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(strings.TrimPrefix(u.URL, "http://")+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: u.user, Password: u.password})); err != nil {
		t.Fatalf("push %s to the upstream: %v", repoTag, err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// gets returns how many times the upstream sent each blob of img.
func (u *upstream) gets(t *testing.T, img v1.Image) map[string]int {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[string]int{}
	for _, d := range blobDigests(t, img) {
		out[d] = u.blobGets[d]
	}
	return out
}

func blobDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{m.Config.Digest.String()}
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	return out
}

func randomImage(t *testing.T, size int64, layers int) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for range layers {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func mirrorOf(t *testing.T, u *upstream, extra string, peers ...*disctest.Disco) *disctest.Disco {
	t.Helper()
	creds := ""
	if u.user != "" {
		creds = fmt.Sprintf(", username: %s, password: %s", u.user, u.password)
	}
	return disctest.Start(t, fmt.Sprintf("proxy: {remoteurl: %s%s}\n%s", u.URL, creds, extra), peers...)
}

// waitCID waits for d to publish the manifest h, and returns its CID.
func waitCID(t *testing.T, d *disctest.Disco, h v1.Hash) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(d.URL("/v2/" + h.Hex + "/tags/list"))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return d.CIDOf(t, h)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mirror did not publish %s within 30s", h)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPullThrough(t *testing.T) {
	for _, creds := range []struct{ name, user, password string }{{"anonymous", "", ""}, {"basic auth", "puller", "s3cret"}} {
		t.Run(creds.name, func(t *testing.T) {
			u := newUpstream(t, creds.user, creds.password)
			img := randomImage(t, 2<<20, 2)
			h := u.push(t, "up/app:v1", img)
			m := mirrorOf(t, u, "")
			plain := disctest.Start(t, "")

			for range 2 {
				if got := disctest.PullAll(t, m.Ref(t, "up/app:v1")); got != h {
					t.Fatalf("pulled up/app:v1 through the mirror as %s, the upstream has %s", got, h)
				}
			}
			// Published as a push of the same image to a plain Disco is.
			plain.Push(t, "elsewhere/app:v2", img)
			if got, want := waitCID(t, m, h), plain.CIDOf(t, h); got != want {
				t.Errorf("the mirrored image has CID %s, pushed to a plain Disco %s", got, want)
			}
			// Every blob, the config the client did not ask for included, came once.
			for d, n := range u.gets(t, img) {
				if n != 1 {
					t.Errorf("the upstream sent blob %s %d times for two pulls, want once", d, n)
				}
			}
			if got := disctest.PullAll(t, m.Ref(t, h.Hex+":latest")); got != h {
				t.Errorf("pulled the digest repository as %s, want %s", got, h)
			}
		})
	}
}

func TestPullThroughIndex(t *testing.T) {
	u := newUpstream(t, "", "")
	var platforms []v1.Image
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img := randomImage(t, 1<<20, 2)
		platforms = append(platforms, img)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	r, err := name.ParseReference(strings.TrimPrefix(u.URL, "http://")+"/up/multi:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	m := mirrorOf(t, u, "")
	plain := disctest.Start(t, "")
	pulled, err := remote.Index(m.Ref(t, "up/multi:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := pulled.Digest(); got != h {
		t.Fatalf("pulled the index as %s, want %s", got, h)
	}
	for _, img := range platforms {
		d, _ := img.Digest()
		disctest.PullAll(t, m.Ref(t, "up/multi@"+d.String()))
	}
	if err := remote.WriteIndex(plain.Ref(t, "x/multi:v1"), idx); err != nil {
		t.Fatal(err)
	}
	if got, want := waitCID(t, m, h), plain.CIDOf(t, h); got != want {
		t.Errorf("the mirrored index has CID %s, pushed to a plain Disco %s", got, want)
	}
}

func TestPushRefused(t *testing.T) {
	u := newUpstream(t, "", "")
	m := mirrorOf(t, u, "")
	for _, req := range []struct{ method, path string }{
		{http.MethodPost, "/v2/up/app/blobs/uploads/"},
		{http.MethodDelete, "/v2/up/app/manifests/sha256:" + strings.Repeat("a", 64)},
	} {
		status, code := disctest.OCIError(t, req.method, m.URL(req.path))
		if status != http.StatusMethodNotAllowed || code != "UNSUPPORTED" {
			t.Errorf("%s %s on a mirror: %d %s, want 405 UNSUPPORTED", req.method, req.path, status, code)
		}
	}
	// A manifest whose blobs are all there already is refused too.
	img := randomImage(t, 1<<10, 1)
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, m.URL("/v2/up/app/manifests/v1"), bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", string(types.OCIManifestSchema1))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(body), "UNSUPPORTED") {
		t.Errorf("PUT of a manifest on a mirror: %s %s, want 405 UNSUPPORTED", res.Status, body)
	}
	if err := remote.Write(m.Ref(t, "up/app:v1"), img); err == nil || !strings.Contains(err.Error(), "UNSUPPORTED") {
		t.Errorf("a push to a mirror: %v, want UNSUPPORTED", err)
	}
}

func TestUpstreamFaults(t *testing.T) {
	u := newUpstream(t, "", "")
	img := randomImage(t, 1<<20, 1)
	h := u.push(t, "up/app:v1", img)
	u.push(t, "up/other:v1", randomImage(t, 1<<20, 1))
	m := mirrorOf(t, u, "disco: {upstreamtimeout: 1s}")
	disctest.PullAll(t, m.Ref(t, "up/app:v1"))
	waitCID(t, m, h)

	// Slow: answers come after the upstream timeout.
	u.mu.Lock()
	u.delay = 3 * time.Second
	u.mu.Unlock()
	start := time.Now()
	if got := disctest.PullAll(t, m.Ref(t, "up/app:v1")); got != h {
		t.Errorf("with a slow upstream, pulled up/app:v1 as %s, want %s", got, h)
	}
	status, code := disctest.OCIError(t, http.MethodGet, m.URL("/v2/up/other/manifests/v1"))
	if status != http.StatusServiceUnavailable || code != "UNAVAILABLE" {
		t.Errorf("a tag not mirrored, upstream slow: %d %s, want 503 UNAVAILABLE", status, code)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("with a slow upstream, a pull and an error took %s, want a few seconds", took)
	}

	// Down.
	u.Close()
	if got := disctest.PullAll(t, m.Ref(t, "up/app:v1")); got != h {
		t.Errorf("with the upstream down, pulled up/app:v1 as %s, want %s", got, h)
	}
	status, code = disctest.OCIError(t, http.MethodGet, m.URL("/v2/up/other/manifests/v1"))
	if status != http.StatusServiceUnavailable || code != "UNAVAILABLE" {
		t.Errorf("a tag not mirrored, upstream down: %d %s, want 503 UNAVAILABLE", status, code)
	}
}

func TestWrongCredentials(t *testing.T) {
	u := newUpstream(t, "puller", "s3cret")
	u.push(t, "up/app:v1", randomImage(t, 1<<10, 1))
	m := disctest.Start(t, fmt.Sprintf("proxy: {remoteurl: %s, username: puller, password: wrong}", u.URL))
	status, code := disctest.OCIError(t, http.MethodGet, m.URL("/v2/up/app/manifests/v1"))
	if status != http.StatusForbidden || code != "DENIED" {
		t.Errorf("with credentials the upstream refuses: %d %s, want 403 DENIED", status, code)
	}
}

// TestFromPeer pulls an image through one mirror, then through a second one peered with
// it: between them they fetch each part of the image from the upstream once, and each
// gets from the other, over IPFS, what the other fetched.
func TestFromPeer(t *testing.T) {
	u := newUpstream(t, "", "")
	img := randomImage(t, 3<<20, 2)
	h := u.push(t, "up/app:v1", img)
	a := mirrorOf(t, u, "")
	b := mirrorOf(t, u, "", a)
	if got := disctest.PullAll(t, a.Ref(t, "up/app:v1")); got != h {
		t.Fatalf("pulled through A as %s, want %s", got, h)
	}
	waitCID(t, a, h)
	if got := disctest.PullAll(t, b.Ref(t, "up/app:v1")); got != h {
		t.Fatalf("pulled through B as %s, want %s", got, h)
	}
	waitCID(t, b, h)
	for d, n := range u.gets(t, img) {
		if n != 1 {
			t.Errorf("the upstream sent blob %s %d times for pulls through two peered mirrors, want once", d, n)
		}
	}
	// Which of A and B fetched what from the upstream is their choice; between them they
	// fetched the manifest and the 3 blobs once. B lists A as a peer, so A, pulling
	// first, has B fetch the parts whose turn is B's (rendezvous hashing of the digest
	// and the peer IDs, which change at every run), and gets them from B; A fetches its
	// own turns, and those it asks for before B's connection is up and identified. B may
	// have fetched all 4 for A (about 1 run in 16), and then gets nothing from A.
	upA, upB := fetches(t, a, "upstream"), fetches(t, b, "upstream")
	t.Logf("from the upstream, A fetched %v manifests and blobs, B %v", upA, upB)
	if upA+upB != 4 {
		t.Errorf("A and B fetched %v manifests and blobs from the upstream, want 4", upA+upB)
	}
	if got := fetches(t, b, "peer"); got != upA {
		t.Errorf("B fetched %v manifests and blobs from A, which fetched %v from the upstream", got, upA)
	}
	if got := fetches(t, a, "peer"); got != upB {
		t.Errorf("A fetched %v manifests and blobs from B, which fetched %v from the upstream", got, upB)
	}
}

// fetches returns how many manifests and blobs d's mirror fetched from the source.
func fetches(t *testing.T, d *disctest.Disco, source string) float64 {
	t.Helper()
	mfs, err := d.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "disco_mirror_fetches_total" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "source" && l.GetValue() == source {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
