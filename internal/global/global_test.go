package global_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	dto "github.com/prometheus/client_model/go"
)

func TestPushFilesUnderDigestAndCID(t *testing.T) {
	a := startDisco(t, "")
	b := startDisco(t, "disco: {clonetimeout: 20s}\n", a)
	img, err := random.Image(3<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	h := a.push(t, "app/x:v1", img)
	c := a.cidOf(t, h)
	if !strings.HasPrefix(c, "bafy") {
		t.Errorf("CID tag %q is not a CID v1", c)
	}
	if got := pullAll(t, a.ref(t, "app/x:v1")); got != h {
		t.Errorf("pushed name pulls %s, want %s", got, h)
	}
	for _, ref := range []string{h.Hex + ":latest", h.Hex + ":" + c, c + ":latest"} {
		if got := pullAll(t, a.ref(t, ref)); got != h {
			t.Errorf("%s pulls %s, want %s", ref, got, h)
		}
	}
	// Another Disco pulls it by CID, over IPFS only.
	if got := pullAll(t, b.ref(t, c)); got != h {
		t.Errorf("B pulls %s, want %s", got, h)
	}
	if n := counter(t, b, "disco_clone_fetched_bytes_total"); n < 3<<20 {
		t.Errorf("disco_clone_fetched_bytes_total = %v, want at least the layers' size", n)
	}
	if n := histogramCount(t, b, "disco_clone_duration_seconds"); n != 1 {
		t.Errorf("disco_clone_duration_seconds counts %d clones, want 1", n)
	}
}

func TestSameImageSameCID(t *testing.T) {
	a := startDisco(t, "")
	c := startDisco(t, "")
	img, err := random.Image(5<<20+7, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := a.push(t, "one/piece:v1", img)
	pushChunked(t, c, "many/chunks", "v2", img, 1<<20+3)
	if ca, cc := a.cidOf(t, h), c.cidOf(t, h); ca != cc {
		t.Errorf("same image, different CIDs: %s (one piece) and %s (chunks)", ca, cc)
	}
	again := a.push(t, "other/name:v9", img)
	if a.cidOf(t, again) != a.cidOf(t, h) {
		t.Errorf("a second push changed the CID")
	}
}

func TestIndexAndArtifactByCID(t *testing.T) {
	a := startDisco(t, "")
	b := startDisco(t, "", a)
	idx, err := random.Index(1<<20, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(a.ref(t, "multi/arch:v1"), idx); err != nil {
		t.Fatal(err)
	}
	ih, _ := idx.Digest()
	pulled, err := remote.Index(b.ref(t, a.cidOf(t, ih)))
	if err != nil {
		t.Fatalf("pull index by CID: %v", err)
	}
	im, err := pulled.IndexManifest()
	if err != nil || len(im.Manifests) != 3 {
		t.Fatalf("index by CID has %v manifests (%v), want 3", im, err)
	}
	for _, m := range im.Manifests {
		pullAll(t, b.ref(t, a.cidOf(t, ih)+"@"+m.Digest.String()))
	}

	// An artifact: its own config media type, an artifactType and a subject.
	cfg, sig := []byte(`{"kind":"signature"}`), []byte("signature bytes")
	a.putBlob(t, "multi/arch", cfg)
	a.putBlob(t, "multi/arch", sig)
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.example.signature.v1",`+
		`"config":{"mediaType":"application/vnd.example.config+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.example.signature","digest":%q,"size":%d}],`+
		`"subject":{"mediaType":%q,"digest":%q,"size":%d}}`,
		types.OCIManifestSchema1, sha(cfg), len(cfg), sha(sig), len(sig), types.OCIImageIndex, ih, mustSize(t, idx)))
	request(t, http.MethodPut, a.url("/v2/multi/arch/manifests/sig"), manifest,
		map[string]string{"Content-Type": string(types.OCIManifestSchema1)}, http.StatusCreated)
	ah, _ := v1.NewHash(sha(manifest))
	art, err := remote.Image(b.ref(t, a.cidOf(t, ah)))
	if err != nil {
		t.Fatalf("artifact by CID: %v", err)
	}
	if got, _ := art.Digest(); got != ah {
		t.Errorf("artifact by CID: %s, want %s", got, ah)
	}
	layers, _ := art.Layers()
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(rc); !bytes.Equal(got, sig) {
		t.Errorf("artifact blob by CID: %q", got)
	}
}

func sha(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// putBlob uploads b to repo in one request.
func (d *disco) putBlob(t *testing.T, repo string, b []byte) {
	t.Helper()
	loc := request(t, http.MethodPost, d.url("/v2/"+repo+"/blobs/uploads/"), nil, nil, http.StatusAccepted)
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	request(t, http.MethodPut, d.abs(loc)+sep+"digest="+sha(b), b, nil, http.StatusCreated)
}

func TestGlobalNamesAreReadOnly(t *testing.T) {
	a := startDisco(t, "")
	img, _ := random.Image(1024, 1)
	h := a.push(t, "app/x:v1", img)
	c := a.cidOf(t, h)
	for _, repo := range []string{c, h.Hex} {
		for _, req := range []struct{ method, path string }{
			{http.MethodPut, "/manifests/v2"},
			{http.MethodDelete, "/manifests/" + h.String()},
			{http.MethodPost, "/blobs/uploads/"},
			{http.MethodDelete, "/blobs/" + h.String()},
		} {
			if code, ec := ociError(t, req.method, a.url("/v2/"+repo+req.path)); code != 403 || ec != "DENIED" {
				t.Errorf("%s %s: %d %s, want 403 DENIED", req.method, repo+req.path, code, ec)
			}
		}
	}
	if got := pullAll(t, a.ref(t, c)); got != h {
		t.Errorf("after refused writes %s pulls %s", c, got)
	}
}

func TestUnknownCIDAnswersInTime(t *testing.T) {
	a := startDisco(t, "disco: {clonetimeout: 1s}\n")
	n := startDisco(t, "disco: {noclone: true}\n", a)
	img, _ := random.Image(1024, 1)
	missing := "bafybeibbkcck6lz37hcipp2mwtfdgstydizjq45z4fkqq4va73mp7qzutu"
	start := time.Now()
	if code, ec := ociError(t, http.MethodGet, a.url("/v2/"+missing+"/manifests/latest")); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("unknown CID: %d %s, want 404 NAME_UNKNOWN", code, ec)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("unknown CID answered after %s, want about the 1s clone timeout", took)
	}
	// With noclone, even content a peer holds is not fetched.
	h := a.push(t, "app/x:v1", img)
	if code, ec := ociError(t, http.MethodGet, n.url("/v2/"+a.cidOf(t, h)+"/manifests/latest")); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("noclone: %d %s, want 404 NAME_UNKNOWN", code, ec)
	}
}

func TestHashesOnly(t *testing.T) {
	a := startDisco(t, "disco: {hashesonly: true}\n")
	img, _ := random.Image(1024, 1)
	h := a.push(t, "app/x:v1", img)
	if code, ec := ociError(t, http.MethodGet, a.url("/v2/app/x/tags/list")); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("pushed name after push: %d %s, want it gone (404 NAME_UNKNOWN)", code, ec)
	}
	if got := pullAll(t, a.ref(t, a.cidOf(t, h))); got != h {
		t.Errorf("by CID: %s, want %s", got, h)
	}
}

// TestLyingRepositoryIsRefused crafts CID repositories whose disco.json maps a digest to
// other content, and checks that a Disco refuses them and keeps nothing of them.
func TestLyingRepositoryIsRefused(t *testing.T) {
	a := startDisco(t, "")
	b := startDisco(t, "disco: {clonetimeout: 20s}\n", a)
	img, _ := random.Image(1<<20, 1)
	h := a.push(t, "app/x:v1", img)
	honest := readTree(t, a.node, "/ipfs/"+a.cidOf(t, h))
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	other := addBytes(t, a.node, bytes.Repeat([]byte("not the layer"), 1000))

	// A lying layer: the manifest is fine, the layer is not.
	lying := cloneMap(honest)
	setBlobCID(t, lying, ld.Hex, other)
	badLayer := addTree(t, a.node, lying).String()
	if _, err := remote.Image(b.ref(t, badLayer)); err != nil {
		t.Fatalf("manifest of the lying repository: %v", err)
	}
	// The layer is found out by the request or, before it, by the background fetch.
	code, ec := ociError(t, http.MethodGet, b.url("/v2/"+badLayer+"/blobs/"+ld.String()))
	if code != 404 || (ec != "BLOB_UNKNOWN" && ec != "NAME_UNKNOWN") {
		t.Errorf("lying layer: %d %s, want 404 BLOB_UNKNOWN or NAME_UNKNOWN", code, ec)
	}
	if code, ec := ociError(t, http.MethodGet, b.url("/v2/"+badLayer+"/manifests/latest")); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("lying repository after the bad layer: %d %s, want it refused", code, ec)
	}

	// A lying manifest is refused at once.
	lying = cloneMap(honest)
	otherImg, _ := random.Image(1024, 1)
	om, _ := otherImg.RawManifest()
	setBlobCID(t, lying, h.Hex, addBytes(t, a.node, om))
	badManifest := addTree(t, a.node, lying).String()
	if code, ec := ociError(t, http.MethodGet, b.url("/v2/"+badManifest+"/manifests/latest")); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("lying manifest: %d %s, want 404 NAME_UNKNOWN", code, ec)
	}

	// Nothing was planted: the true image, pushed to B later, is served as it is.
	b.push(t, "later/push:v1", img)
	if got := pullAll(t, b.ref(t, "later/push:v1")); got != h {
		t.Errorf("after the lies B serves %s, want %s", got, h)
	}
	if got := pullAll(t, b.ref(t, a.cidOf(t, h))); got != h {
		t.Errorf("the honest CID pulls %s, want %s", got, h)
	}
}

func cloneMap(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func mustSize(t *testing.T, idx interface{ RawManifest() ([]byte, error) }) int64 {
	b, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(b))
}

// pushChunked pushes img's blobs to repo in PATCH requests of chunk bytes, then its
// manifest under tag, the way a client that resumes uploads would.
func pushChunked(t *testing.T, d *disco, repo, tag string, img v1.Image, chunk int) {
	t.Helper()
	cfg, _ := img.RawConfigFile()
	cfgDigest, _ := img.ConfigName()
	blobs := map[v1.Hash][]byte{cfgDigest: cfg}
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, _ := l.Compressed()
		b, _ := io.ReadAll(rc)
		h, _ := l.Digest()
		blobs[h] = b
	}
	for h, b := range blobs {
		loc := request(t, http.MethodPost, d.url("/v2/"+repo+"/blobs/uploads/"), nil, nil, http.StatusAccepted)
		for off := 0; off < len(b); off += chunk {
			end := min(off+chunk, len(b))
			loc = request(t, http.MethodPatch, d.abs(loc), b[off:end], map[string]string{
				"Content-Range": fmt.Sprintf("%d-%d", off, end-1),
				"Content-Type":  "application/octet-stream",
			}, http.StatusAccepted)
		}
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		request(t, http.MethodPut, d.abs(loc)+sep+"digest="+h.String(), nil, nil, http.StatusCreated)
	}
	m, _ := img.RawManifest()
	mt, _ := img.MediaType()
	request(t, http.MethodPut, d.url("/v2/"+repo+"/manifests/"+tag), m, map[string]string{"Content-Type": string(mt)}, http.StatusCreated)
}

func (d *disco) abs(loc string) string {
	if strings.HasPrefix(loc, "/") {
		return d.url(loc)
	}
	return loc
}

// request does an HTTP request, checks its status and returns its Location header.
func request(t *testing.T, method, url string, body []byte, headers map[string]string, want int) string {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s %s, want %d", method, url, resp.Status, b, want)
	}
	return resp.Header.Get("Location")
}

func metric(t *testing.T, d *disco, name string) *dto.Metric {
	t.Helper()
	mfs, err := d.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) > 0 {
			return mf.Metric[0]
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func counter(t *testing.T, d *disco, name string) float64 {
	return metric(t, d, name).GetCounter().GetValue()
}

func histogramCount(t *testing.T, d *disco, name string) uint64 {
	return metric(t, d, name).GetHistogram().GetSampleCount()
}
