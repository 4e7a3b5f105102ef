package global_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/discoregistry/disco/internal/disctest"
)

// An attacker pushes hand-made IPFS directories to a Disco as ordinary blobs; another Disco
// peered with it is asked to pull them by CID. Each must be refused before it is linked,
// and leave the registry as fast and as small as it was.

// honestTree returns the files of the CID repository of a freshly pushed image on a.
func honestTree(t *testing.T, a *disctest.Disco) (disctest.Dir, string) {
	t.Helper()
	img, _ := random.Image(2048, 1)
	h := a.Push(t, "honest/app:v1", img)
	c := a.CIDOf(t, h)
	return disctest.TreeOf(disctest.ReadTree(t, a.Node, "/ipfs/"+c)), c
}

// subdir returns the CID of the directory name in the CID repository c.
func subdir(t *testing.T, a *disctest.Disco, c, name string) cid.Cid {
	t.Helper()
	e, err := a.Node.Stat(context.Background(), "/ipfs/"+c+"/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return e.CID
}

func TestHostileDirectoriesRefused(t *testing.T) {
	a := disctest.Start(t, "")
	b := disctest.Start(t, "disco: {clonetimeout: 20s}\n", a)
	tree, c := honestTree(t, a)
	layers := subdir(t, a, c, "_layers")
	manifests := subdir(t, a, c, "_manifests")
	tags := subdir(t, a, c, "_manifests/tags")

	withSub := func(name string, l disctest.Link) disctest.Dir {
		for _, e := range tree {
			if e.Name == name {
				return tree.With(disctest.Link{Name: name, Node: e.Node.(disctest.Dir).With(l)})
			}
		}
		t.Fatalf("no %s", name)
		return nil
	}
	for _, tc := range []struct {
		name string
		dir  disctest.Dir
	}{
		{"dot", tree.With(disctest.Link{Name: ".", Node: layers})},
		{"empty name", tree.With(disctest.Link{Name: "", Node: manifests})},
		{"dot dot", tree.With(disctest.Link{Name: "..", Node: layers})},
		{"slash", tree.With(disctest.Link{Name: "a/b", Node: []byte("x")})},
		{"unknown entry", tree.With(disctest.Link{Name: "extra", Node: []byte("x")})},
		{"uploads with content", tree.With(disctest.Link{Name: "_uploads", Node: disctest.Dir{
			{Name: "id", Node: disctest.Dir{{Name: "startedat", Node: []byte("2000-01-01T00:00:00Z")}}}}})},
		{"dot in manifests", withSub("_manifests", disctest.Link{Name: ".", Node: tags})},
		{"file for a directory", tree.With(disctest.Link{Name: "_layers", Node: []byte("x")})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := a.PushTree(t, "attacker/tree", tc.dir).String()
			if code, ec := disctest.OCIError(t, http.MethodGet, b.URL("/v2/"+bad+"/manifests/latest")); code != 404 || ec != "NAME_UNKNOWN" {
				t.Errorf("hostile repository %q: %d %s, want 404 NAME_UNKNOWN", tc.name, code, ec)
			}
			names := catalog(t, b)
			if slices.Contains(names, bad) {
				t.Errorf("the catalog lists the hostile repository %s", bad)
			}
		})
	}
	// The honest repository still clones.
	if got := disctest.PullAll(t, b.Ref(t, c)); got.String() == "" {
		t.Error("honest repository does not pull")
	}
	if !slices.Contains(catalog(t, b), c) {
		t.Errorf("the catalog does not list the honest clone %s", c)
	}
}

// catalog lists every repository of d, failing if d does not answer in a minute.
func catalog(t *testing.T, d *disctest.Disco) []string {
	t.Helper()
	client := &http.Client{Timeout: time.Minute}
	resp, err := client.Get(d.URL("/v2/_catalog?n=1000"))
	if err != nil {
		t.Fatalf("catalog: %v", err)
	}
	defer resp.Body.Close()
	var list struct{ Repositories []string }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&list) != nil {
		t.Fatalf("catalog: %s", resp.Status)
	}
	return list.Repositories
}

// fakeImage is an image made by hand: a manifest naming a config and one layer by any
// digest and size, its CID repository mapping that layer to any CID.
func fakeImage(t *testing.T, a *disctest.Disco, layerSize int64, layer cid.Cid) (repo, layerDigest string) {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	fake := make([]byte, 32)
	rand.Read(fake)
	layerDigest = fmt.Sprintf("sha256:%x", fake)
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		disctest.SHA256(cfg), len(cfg), layerDigest, layerSize))
	md, cd := disctest.SHA256(manifest), disctest.SHA256(cfg)
	mc, cc := a.PushRaw(t, "attacker/img", manifest), a.PushRaw(t, "attacker/img", cfg)
	hex := func(d string) string { return strings.TrimPrefix(d, "sha256:") }
	dj, _ := json.Marshal(map[string]any{"blobs": []map[string]string{
		{"digest": hex(md), "cid": mc.String()}, {"digest": hex(cd), "cid": cc.String()},
		{"digest": hex(layerDigest), "cid": layer.String()}}})
	tree := disctest.TreeOf(map[string][]byte{
		"_layers/sha256/" + hex(cd) + "/link":                      []byte(cd),
		"_layers/sha256/" + hex(layerDigest) + "/link":             []byte(layerDigest),
		"_manifests/revisions/sha256/" + hex(md) + "/link":         []byte(md),
		"_manifests/tags/latest/current/link":                      []byte(md),
		"_manifests/tags/latest/index/sha256/" + hex(md) + "/link": []byte(md),
		"disco.json": dj,
	})
	return a.PushTree(t, "attacker/img", tree).String(), layerDigest
}

// getManifest gets the manifest tagged latest in repo, as an OCI client asks for it, and
// returns the status and OCI error code.
func getManifest(t *testing.T, d *disctest.Disco, repo string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, d.URL("/v2/"+repo+"/manifests/latest"), nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Errors []struct{ Code string } }
	if json.NewDecoder(resp.Body).Decode(&body) == nil && len(body.Errors) > 0 {
		return resp.StatusCode, body.Errors[0].Code
	}
	return resp.StatusCode, ""
}

// huge returns a file of 1 TiB in three blocks: a 1 MiB leaf, a node linking it 1024
// times, and a node linking that 1024 times.
func huge(t *testing.T, a *disctest.Disco) cid.Cid {
	t.Helper()
	leaf := make([]byte, 1<<20)
	rand.Read(leaf)
	l := a.PushRaw(t, "attacker/huge", leaf)
	mid := a.PushFile(t, "attacker/huge", 1<<20, slices.Repeat([]cid.Cid{l}, 1024)...)
	return a.PushFile(t, "attacker/huge", 1<<30, slices.Repeat([]cid.Cid{mid}, 1024)...)
}

func TestHugeBlobRefused(t *testing.T) {
	a := disctest.Start(t, "")
	b := disctest.Start(t, "disco: {clonetimeout: 10s}\n", a)
	big := huge(t, a)

	// Declared huge in the manifest too: the clone is refused.
	repo, _ := fakeImage(t, a, 1<<40, big)
	if code, ec := getManifest(t, b, repo); code != 404 || ec != "NAME_UNKNOWN" {
		t.Errorf("an image of 1 TiB: %d %s, want 404 NAME_UNKNOWN", code, ec)
	}

	// Declared small in the manifest, huge in IPFS: HEAD answers without fetching it, GET
	// refuses it, and no work goes on once they are answered.
	repo, ld := fakeImage(t, a, 1024, big)
	if code, _ := getManifest(t, b, repo); code != 200 {
		t.Fatalf("manifest of the small-looking image: %d", code)
	}
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		req, _ := http.NewRequestWithContext(ctx, method, b.URL("/v2/"+repo+"/blobs/"+ld), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s of the 1 TiB layer: %v", method, err)
		}
		n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s of the 1 TiB layer: %s (%d bytes read), want 404", method, resp.Status, n)
		}
	}
	waitNoFetches(t, b)
}

// waitNoFetches fails t unless d's blob fetches in progress are back to 0 within 5 s.
func waitNoFetches(t *testing.T, d *disctest.Disco) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n := disctest.Gauge(t, d, "disco_clone_blob_fetches_in_progress")
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v blob fetches still in progress after their requests were answered", n)
		}
	}
}

// TestLiarDoesNotStallHonest has a lying repository and an honest one list the same layer,
// the liar under a CID whose blocks nobody has: a pull from the honest one must not wait
// for, or fail with, the liar's fetch.
func TestLiarDoesNotStallHonest(t *testing.T) {
	a := disctest.Start(t, "")
	b := disctest.Start(t, "disco: {clonetimeout: 30s}\n", a)
	img, _ := random.Image(2<<20, 1)
	h := a.Push(t, "honest/app:v1", img)
	c := a.CIDOf(t, h)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()

	// The liar's layer: a file whose root is served and whose leaves exist nowhere.
	missing := func() cid.Cid {
		b := make([]byte, 64)
		rand.Read(b)
		c, err := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum(b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	stall := a.PushFile(t, "attacker/stall", 1<<20, missing(), missing())
	tree := disctest.ReadTree(t, a.Node, "/ipfs/"+c)
	disctest.SetBlobCID(t, tree, ld.Hex, stall)
	liar := a.PushTree(t, "attacker/stall", disctest.TreeOf(tree)).String()

	var wg sync.WaitGroup
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL("/v2/"+liar+"/blobs/"+ld.String()), nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	time.Sleep(2 * time.Second) // the liar's fetch is under way
	if got := disctest.PullAll(t, b.Ref(t, c)); got != h {
		t.Errorf("honest repository pulls %s, want %s", got, h)
	}
	wg.Wait()
}

// TestForeignLayerNotLeaked pushes to one repository a manifest naming, as a
// non-distributable layer with urls, a layer of another repository that the pusher
// cannot read: Distribution does not look for such layers, and publishing must not file
// the other repository's blob under the new image's CID.
func TestForeignLayerNotLeaked(t *testing.T) {
	a := disctest.Start(t, "")
	secret, _ := random.Image(2048, 1)
	a.Push(t, "private/a:v1", secret)
	layers, _ := secret.Layers()
	ld, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	a.PutBlob(t, "public/b", cfg)
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":%q,"size":%d,"urls":["https://example.com/layer"]}]}`,
		disctest.SHA256(cfg), len(cfg), ld.String(), size))
	disctest.Request(t, http.MethodPut, a.URL("/v2/public/b/manifests/v1"), manifest,
		map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, http.StatusCreated)
	h, _ := v1.NewHash(disctest.SHA256(manifest))
	c := a.CIDOf(t, h)
	if code, _ := disctest.OCIError(t, http.MethodGet, a.URL("/v2/"+c+"/blobs/"+ld.String())); code != http.StatusNotFound {
		t.Errorf("the other repository's layer by the new CID: %d, want 404", code)
	}
	if dj := disctest.ReadTree(t, a.Node, "/ipfs/"+c)["disco.json"]; strings.Contains(string(dj), ld.Hex) {
		t.Errorf("disco.json of the new CID lists the other repository's layer: %s", dj)
	}
}

// TestClonedBlobsCanonical clones an image whose layers come as DAGs of other chunks than
// Disco's, as the original Disco made them: once cloned, a push of the same image gets the
// CID it gets on every other Disco.
func TestClonedBlobsCanonical(t *testing.T) {
	a := disctest.Start(t, "")
	b := disctest.Start(t, "", a)
	img, _ := random.Image(2<<20, 1)
	big, _ := random.Image(6<<20, 1) // streamed rather than fetched first
	bigLayers, _ := big.Layers()
	img, _ = mutate.AppendLayers(img, bigLayers[0])
	h := a.Push(t, "app/x:v1", img)
	want := a.CIDOf(t, h)

	tree := disctest.ReadTree(t, a.Node, "/ipfs/"+want)
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, _ := l.Compressed()
		blob, _ := io.ReadAll(rc)
		rc.Close()
		ld, _ := l.Digest()
		disctest.SetBlobCID(t, tree, ld.Hex, a.PushChunks(t, "attacker/chunks", blob, 256<<10))
	}
	other := a.PushTree(t, "attacker/chunks", disctest.TreeOf(tree)).String()
	if got := disctest.PullAll(t, b.Ref(t, other)); got != h {
		t.Fatalf("B pulls %s, want %s", got, h)
	}
	b.Push(t, "later/x:v1", img)
	if got := b.CIDOf(t, h); got != want {
		t.Errorf("after the clone, a push of the image gets CID %s, want %s as on A", got, want)
	}
}
