package global_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"github.com/opencontainers/go-digest"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/discoregistry/disco/internal/disctest"
	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/layout"
)

func TestPushFilesUnderDigestAndCID(t *testing.T) {
	a := disctest.Start(t, "")
	b := disctest.Start(t, "disco: {clonetimeout: 20s}\n", a)
	img, err := random.Image(3<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	h := a.Push(t, "app/x:v1", img)
	c := a.CIDOf(t, h)
	if !strings.HasPrefix(c, "bafy") {
		t.Errorf("CID tag %q is not a CID v1", c)
	}
	if got := disctest.PullAll(t, a.Ref(t, "app/x:v1")); got != h {
		t.Errorf("pushed name pulls %s, want %s", got, h)
	}
	for _, ref := range []string{h.Hex + ":latest", h.Hex + ":" + c, c + ":latest"} {
		if got := disctest.PullAll(t, a.Ref(t, ref)); got != h {
			t.Errorf("%s pulls %s, want %s", ref, got, h)
		}
	}
	// Another Disco pulls it by CID, over IPFS only.
	if got := disctest.PullAll(t, b.Ref(t, c)); got != h {
		t.Errorf("B pulls %s, want %s", got, h)
	}
	if n := disctest.Counter(t, b, "disco_clone_fetched_bytes_total"); n < 3<<20 {
		t.Errorf("disco_clone_fetched_bytes_total = %v, want at least the layers' size", n)
	}
	if n := disctest.HistogramCount(t, b, "disco_clone_duration_seconds"); n != 1 {
		t.Errorf("disco_clone_duration_seconds counts %d clones, want 1", n)
	}
	// B files the clone under its digest too, as A did.
	if got := b.CIDOf(t, h); got != c {
		t.Errorf("B's digest repository names CID %s, want %s", got, c)
	}
	if got := disctest.PullAll(t, b.Ref(t, h.Hex+":latest")); got != h {
		t.Errorf("B pulls %s by digest name: %s", h.Hex, got)
	}
}

func TestSameImageSameCID(t *testing.T) {
	a := disctest.Start(t, "")
	c := disctest.Start(t, "")
	img, err := random.Image(5<<20+7, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := a.Push(t, "one/piece:v1", img)
	disctest.PushChunked(t, c, "many/chunks", "v2", img, 1<<20+3)
	if ca, cc := a.CIDOf(t, h), c.CIDOf(t, h); ca != cc {
		t.Errorf("same image, different CIDs: %s (one piece) and %s (chunks)", ca, cc)
	}
	again := a.Push(t, "other/name:v9", img)
	if a.CIDOf(t, again) != a.CIDOf(t, h) {
		t.Errorf("a second push changed the CID")
	}
}

func TestIndexAndArtifactByCID(t *testing.T) {
	a := disctest.Start(t, "")
	b := disctest.Start(t, "", a)
	idx, err := random.Index(1<<20, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(a.Ref(t, "multi/arch:v1"), idx); err != nil {
		t.Fatal(err)
	}
	ih, _ := idx.Digest()
	pulled, err := remote.Index(b.Ref(t, a.CIDOf(t, ih)))
	if err != nil {
		t.Fatalf("pull index by CID: %v", err)
	}
	im, err := pulled.IndexManifest()
	if err != nil || len(im.Manifests) != 3 {
		t.Fatalf("index by CID has %v manifests (%v), want 3", im, err)
	}
	for _, m := range im.Manifests {
		disctest.PullAll(t, b.Ref(t, a.CIDOf(t, ih)+"@"+m.Digest.String()))
	}

	// An artifact: its own config media type, an artifactType and a subject.
	cfg, sig := []byte(`{"kind":"signature"}`), []byte("signature bytes")
	a.PutBlob(t, "multi/arch", cfg)
	a.PutBlob(t, "multi/arch", sig)
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.example.signature.v1",`+
		`"config":{"mediaType":"application/vnd.example.config+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.example.signature","digest":%q,"size":%d}],`+
		`"subject":{"mediaType":%q,"digest":%q,"size":%d}}`,
		types.OCIManifestSchema1, disctest.SHA256(cfg), len(cfg), disctest.SHA256(sig), len(sig), types.OCIImageIndex, ih, disctest.RawSize(t, idx)))
	disctest.Request(t, http.MethodPut, a.URL("/v2/multi/arch/manifests/sig"), manifest,
		map[string]string{"Content-Type": string(types.OCIManifestSchema1)}, http.StatusCreated)
	ah, _ := v1.NewHash(disctest.SHA256(manifest))
	art, err := remote.Image(b.Ref(t, a.CIDOf(t, ah)))
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

func TestGlobalNamesAreReadOnly(t *testing.T) {
	a := disctest.Start(t, "")
	img, _ := random.Image(1024, 1)
	h := a.Push(t, "app/x:v1", img)
	c := a.CIDOf(t, h)
	for _, repo := range []string{c, h.Hex} {
		for _, req := range []struct{ method, path string }{
			{http.MethodPut, "/manifests/v2"},
			{http.MethodDelete, "/manifests/" + h.String()},
			{http.MethodPost, "/blobs/uploads/"},
			{http.MethodDelete, "/blobs/" + h.String()},
		} {
			if code, ec := disctest.OCIError(t, req.method, a.URL("/v2/"+repo+req.path)); code != 403 || ec != "DENIED" {
				t.Errorf("%s %s: %d %s, want 403 DENIED", req.method, repo+req.path, code, ec)
			}
		}
	}
	// Nor below them: helm push oci://host/<cid> would write <cid>/chart.
	for _, repo := range []string{c + "/chart", h.Hex + "/sub/chart"} {
		if code, ec := disctest.OCIError(t, http.MethodPost, a.URL("/v2/"+repo+"/blobs/uploads/")); code != 403 || ec != "DENIED" {
			t.Errorf("POST an upload to %s: %d %s, want 403 DENIED", repo, code, ec)
		}
	}
	if got := disctest.PullAll(t, a.Ref(t, c)); got != h {
		t.Errorf("after refused writes %s pulls %s", c, got)
	}
}

func TestUnknownCIDAnswersInTime(t *testing.T) {
	a := disctest.Start(t, "disco: {clonetimeout: 1s}\n")
	n := disctest.Start(t, "disco: {noclone: true}\n", a)
	img, _ := random.Image(1024, 1)
	missing := "bafybeibbkcck6lz37hcipp2mwtfdgstydizjq45z4fkqq4va73mp7qzutu"
	start := time.Now()
	if code, ec := disctest.OCIError(t, http.MethodGet, a.URL("/v2/"+missing+"/manifests/latest")); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("unknown CID: %d %s, want 404 NAME_UNKNOWN", code, ec)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("unknown CID answered after %s, want about the 1s clone timeout", took)
	}
	// With noclone, even content a peer holds is not fetched.
	h := a.Push(t, "app/x:v1", img)
	if code, ec := disctest.OCIError(t, http.MethodGet, n.URL("/v2/"+a.CIDOf(t, h)+"/manifests/latest")); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("noclone: %d %s, want 404 NAME_UNKNOWN", code, ec)
	}
}

func TestHashesOnly(t *testing.T) {
	a := disctest.Start(t, "disco: {hashesonly: true}\n")
	img, _ := random.Image(1024, 1)
	// An upload left in progress in the repository goes with it.
	loc := disctest.Request(t, http.MethodPost, a.URL("/v2/app/x/blobs/uploads/"), nil, nil, http.StatusAccepted)
	disctest.Request(t, http.MethodPatch, loc, []byte("some bytes"), map[string]string{"Content-Type": "application/octet-stream"}, http.StatusAccepted)
	h := a.Push(t, "app/x:v1", img)
	spooled := filepath.Join(a.Uploads, layout.Repository("app/x"))
	if _, err := os.Stat(spooled); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the removed repository's upload is still spooled in %s: %v", spooled, err)
	}
	if code, ec := disctest.OCIError(t, http.MethodGet, a.URL("/v2/app/x/tags/list")); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("pushed name after push: %d %s, want it gone (404 NAME_UNKNOWN)", code, ec)
	}
	if got := disctest.PullAll(t, a.Ref(t, a.CIDOf(t, h))); got != h {
		t.Errorf("by CID: %s, want %s", got, h)
	}
}

// TestLyingRepositoryIsRefused crafts CID repositories whose disco.json maps a digest to
// other content, and checks that a Disco refuses them and keeps nothing of them.
func TestLyingRepositoryIsRefused(t *testing.T) {
	a := disctest.Start(t, "")
	b := disctest.Start(t, "disco: {clonetimeout: 20s}\n", a)
	img, _ := random.Image(1<<20, 1)
	h := a.Push(t, "app/x:v1", img)
	honest := disctest.ReadTree(t, a.Node, "/ipfs/"+a.CIDOf(t, h))
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	other := disctest.AddBytes(t, a.Node, bytes.Repeat([]byte("not the layer"), 1000))

	// A lying layer: the manifest is fine, the layer is not.
	lying := maps.Clone(honest)
	disctest.SetBlobCID(t, lying, ld.Hex, other)
	badLayer := disctest.AddTree(t, a.Node, lying).String()
	if _, err := remote.Image(b.Ref(t, badLayer)); err != nil {
		t.Fatalf("manifest of the lying repository: %v", err)
	}
	// The layer is found out by the request or, before it, by the background fetch.
	code, ec := disctest.OCIError(t, http.MethodGet, b.URL("/v2/"+badLayer+"/blobs/"+ld.String()))
	if code != 404 || (ec != "BLOB_UNKNOWN" && ec != "NAME_UNKNOWN") {
		t.Errorf("lying layer: %d %s, want 404 BLOB_UNKNOWN or NAME_UNKNOWN", code, ec)
	}
	if code, ec := disctest.OCIError(t, http.MethodGet, b.URL("/v2/"+badLayer+"/manifests/latest")); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("lying repository after the bad layer: %d %s, want it refused", code, ec)
	}

	// A lying manifest is refused at once.
	lying = maps.Clone(honest)
	otherImg, _ := random.Image(1024, 1)
	om, _ := otherImg.RawManifest()
	disctest.SetBlobCID(t, lying, h.Hex, disctest.AddBytes(t, a.Node, om))
	badManifest := disctest.AddTree(t, a.Node, lying).String()
	if code, ec := disctest.OCIError(t, http.MethodGet, b.URL("/v2/"+badManifest+"/manifests/latest")); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("lying manifest: %d %s, want 404 NAME_UNKNOWN", code, ec)
	}

	// Nothing was planted: the true image, pushed to B later, is served as it is.
	b.Push(t, "later/push:v1", img)
	if got := disctest.PullAll(t, b.Ref(t, "later/push:v1")); got != h {
		t.Errorf("after the lies B serves %s, want %s", got, h)
	}
	if got := disctest.PullAll(t, b.Ref(t, a.CIDOf(t, h))); got != h {
		t.Errorf("the honest CID pulls %s, want %s", got, h)
	}
}

// TestSha512References files and clones an image that names its blobs by sha512.
func TestSha512References(t *testing.T) {
	a := disctest.Start(t, "")
	b := disctest.Start(t, "", a)
	cfg, layer := []byte(`{"architecture":"amd64","os":"linux"}`), bytes.Repeat([]byte("layer "), 100000)
	sha512 := func(b []byte) string { return fmt.Sprintf("sha512:%x", sha512.Sum512(b)) }
	for _, blob := range [][]byte{cfg, layer} {
		loc := disctest.Request(t, http.MethodPost, a.URL("/v2/app/x/blobs/uploads/"), nil, nil, http.StatusAccepted)
		disctest.Request(t, http.MethodPut, loc+"&digest="+sha512(blob), blob, nil, http.StatusCreated)
	}
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		types.OCIManifestSchema1, sha512(cfg), len(cfg), sha512(layer), len(layer)))
	disctest.Request(t, http.MethodPut, a.URL("/v2/app/x/manifests/v1"), manifest,
		map[string]string{"Content-Type": string(types.OCIManifestSchema1)}, http.StatusCreated)
	h, _ := v1.NewHash(disctest.SHA256(manifest))
	c := a.CIDOf(t, h)
	for _, blob := range [][]byte{cfg, layer} {
		resp, err := http.Get(b.URL("/v2/" + c + "/blobs/" + sha512(blob)))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, blob) || resp.Header.Get("Docker-Content-Digest") != sha512(blob) {
			t.Errorf("blob %s by CID: %s, %d bytes, digest header %q", sha512(blob), resp.Status, len(got), resp.Header.Get("Docker-Content-Digest"))
		}
	}
}

// TestBigBlobStreamed pulls by CID a layer too big to be fetched before it is served: it
// is streamed, checked on the way and kept; one whose disco.json lies is cut short, never
// kept, and its repository refused.
func TestBigBlobStreamed(t *testing.T) {
	a := disctest.Start(t, "")
	b := disctest.Start(t, "", a)
	img, _ := random.Image(6<<20, 1)
	h := a.Push(t, "app/big:v1", img)
	c := a.CIDOf(t, h)
	if got := disctest.PullAll(t, b.Ref(t, c)); got != h {
		t.Errorf("B pulls %s, want %s", got, h)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	d := digest.Digest(ld.String())
	// The client has the layer before B links it (TestStreamEndsBeforeLink): wait for that.
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err = b.Node.Stat(context.Background(), layout.Blob(d)); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("the streamed layer was not kept: %v", err)
	}

	lying := disctest.ReadTree(t, a.Node, "/ipfs/"+c)
	other, _ := random.Image(6<<20, 1)
	ol, _ := other.Layers()
	rc, _ := ol[0].Compressed()
	ob, _ := io.ReadAll(rc)
	disctest.SetBlobCID(t, lying, ld.Hex, disctest.AddBytes(t, a.Node, ob))
	bad := disctest.AddTree(t, a.Node, lying).String()
	c2 := disctest.Start(t, "", a) // holds nothing yet
	resp, err := http.Get(c2.URL("/v2/" + bad + "/blobs/" + ld.String()))
	if err == nil {
		got, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && rerr == nil && int64(len(got)) == resp.ContentLength {
			t.Errorf("a lying layer was served whole: %s, %d bytes", resp.Status, len(got))
		}
	}
	if code, ec := disctest.OCIError(t, http.MethodGet, c2.URL("/v2/"+bad+"/manifests/latest")); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("after the lying layer: %d %s, want the repository refused", code, ec)
	}
	if _, err := c2.Node.Stat(context.Background(), layout.Blob(d)); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("the lying layer was kept under its digest: %v", err)
	}
}

// TestMountFromCID mounts, into a repository of B, a layer of a CID repository B has not
// fetched yet, as regctl and ctr do when they copy an image: it is fetched and mounted,
// and the client need not upload it.
func TestMountFromCID(t *testing.T) {
	a := disctest.Start(t, "")
	b := disctest.Start(t, "", a)
	img, _ := random.Image(2<<20, 1)
	h := a.Push(t, "app/x:v1", img)
	c := a.CIDOf(t, h)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	resp, err := http.Post(b.URL("/v2/copy/x/blobs/uploads/?from="+c+"&mount="+ld.String()), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mount from the CID repository: %s, want 201 Created", resp.Status)
	}
	resp, err = http.Get(b.URL("/v2/copy/x/blobs/" + ld.String()))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || digest.FromBytes(got).String() != ld.String() {
		t.Errorf("the mounted layer: %s, %d bytes", resp.Status, len(got))
	}
}
