package gc_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"
	"io"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/disctest"
	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/gc"
	"github.com/discoregistry/disco/internal/layout"
)

func sha512Of(b []byte) string { return fmt.Sprintf("sha512:%x", sha512.Sum512(b)) }

// pushSha512 pushes an image whose manifest names its config and layer by sha512, and
// returns the layer.
func pushSha512(t *testing.T, d *disctest.Disco, repo string) []byte {
	t.Helper()
	cfg, layer := []byte(`{"architecture":"amd64","os":"linux"}`), bytes.Repeat([]byte("sha512 layer "), 50000)
	for _, blob := range [][]byte{cfg, layer} {
		loc := disctest.Request(t, http.MethodPost, d.URL("/v2/"+repo+"/blobs/uploads/"), nil, nil, http.StatusAccepted)
		disctest.Request(t, http.MethodPut, loc+"&digest="+sha512Of(blob), blob, nil, http.StatusCreated)
	}
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		types.OCIManifestSchema1, sha512Of(cfg), len(cfg), sha512Of(layer), len(layer)))
	disctest.Request(t, http.MethodPut, d.URL("/v2/"+repo+"/manifests/v1"), manifest,
		map[string]string{"Content-Type": string(types.OCIManifestSchema1)}, http.StatusCreated)
	return layer
}

// TestRemoveAndSweep removes one image of three for good and sweeps: its blobs go, and
// the others, one of them named by sha512, pull as before by name, digest and CID.
func TestRemoveAndSweep(t *testing.T) {
	ctx := context.Background()
	d := disctest.Start(t, "")
	keep, _ := random.Image(1<<20, 2)
	hk := d.Push(t, "app/keep:v1", keep)
	doomed, _ := random.Image(2<<20, 2)
	hd := d.Push(t, "app/doomed:v1", doomed)
	d.Push(t, "other/copy:v9", doomed) // a second name for it
	doomedCID := d.CIDOf(t, hd)
	layer := pushSha512(t, d, "app/long")

	if s, err := gc.Sweep(ctx, d.Store, true, nil); err != nil || s.Blobs != 0 {
		t.Fatalf("before any removal, a sweep finds %d unreferenced blobs (%v), want 0", s.Blobs, err)
	}
	got, err := gc.Resolve(ctx, d.Store, "app/doomed:v1")
	if err != nil || got != digest.Digest(hd.String()) {
		t.Fatalf("Resolve(app/doomed:v1) = %s, %v", got, err)
	}
	for _, ref := range []string{hd.Hex, doomedCID, "app/doomed@" + hd.String()} {
		if got, err := gc.Resolve(ctx, d.Store, ref); err != nil || got != digest.Digest(hd.String()) {
			t.Errorf("Resolve(%s) = %s, %v", ref, got, err)
		}
	}
	removed, err := gc.Remove(ctx, d.Store, digest.Digest(hd.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) < 4 {
		t.Errorf("Remove removed %q, want at least both names and the digest and CID repositories", removed)
	}
	dry, err := gc.Sweep(ctx, d.Store, true, nil)
	if err != nil || dry.Blobs != 4 { // its manifest, config and two layers
		t.Fatalf("dry run: %+v, %v; want the removed image's 4 blobs", dry, err)
	}
	if again, _ := gc.Sweep(ctx, d.Store, true, nil); again != dry {
		t.Errorf("a dry run removed something: %+v, then %+v", dry, again)
	}
	s, err := gc.Sweep(ctx, d.Store, false, nil)
	if err != nil || s.Blobs != 4 || s.Bytes < 4<<20 {
		t.Fatalf("sweep: %+v, %v; want 4 blobs of more than 4 MiB", s, err)
	}

	for _, ref := range []string{"app/keep:v1", hk.Hex, d.CIDOf(t, hk)} {
		if got := disctest.PullAll(t, d.Ref(t, ref)); got != hk {
			t.Errorf("%s pulls %s, want %s", ref, got, hk)
		}
	}
	resp, err := http.Get(d.URL("/v2/app/long/blobs/" + sha512Of(layer)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(b, layer) {
		t.Errorf("the sha512-named layer after the sweep: %s, %d bytes", resp.Status, len(b))
	}
	for _, ref := range []string{"app/doomed:v1", "other/copy:v9", hd.Hex + ":latest"} {
		if _, err := remoteImage(d, ref); err == nil {
			t.Errorf("%s still pulls after its removal", ref)
		}
	}
	// The node still holds the CID repository's blocks, which a pull would clone again,
	// until its own garbage collection; the registry no longer does.
	if _, err := d.Store.Stat(ctx, layout.Repository(doomedCID)); !driver.IsNotFound(err) {
		t.Errorf("the CID repository after its removal: %v", err)
	}
}

func remoteImage(d *disctest.Disco, ref string) (v1.Image, error) {
	r, err := parseRef(d, ref)
	if err != nil {
		return nil, err
	}
	return remoteGet(r)
}

// TestSweepEmpty sweeps a registry that holds nothing yet.
func TestSweepEmpty(t *testing.T) {
	d := disctest.Start(t, "")
	if s, err := gc.Sweep(context.Background(), d.Store, false, nil); err != nil || s != (gc.Stats{}) {
		t.Errorf("sweep of an empty registry: %+v, %v", s, err)
	}
}
