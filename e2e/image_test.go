package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// manifestTypes is the Accept header of a client that takes OCI and Docker manifests.
var manifestTypes = strings.Join([]string{
	string(types.OCIManifestSchema1), string(types.OCIImageIndex),
	string(types.DockerManifestSchema2), string(types.DockerManifestList),
}, ", ")

// randomImage returns an OCI image with layers layers of size random bytes each.
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

// ref parses an image reference on a plain-HTTP registry.
func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pushImage pushes img to d as repo:tag with go-containerregistry and returns its digest.
func pushImage(t *testing.T, d *Disco, repo, tag string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(ref(t, d.Host+"/"+repo+":"+tag), img); err != nil {
		t.Fatalf("push %s:%s to %s: %v", repo, tag, d.Host, err)
	}
	return imageDigest(t, img)
}

func imageDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkImage pulls s (repo:tag or repo@digest on d) and checks that its manifest, config
// and layers are byte for byte those of want.
func checkImage(t *testing.T, d *Disco, s string, want v1.Image) {
	t.Helper()
	desc, err := remote.Get(ref(t, d.Host+"/"+s))
	if err != nil {
		t.Fatalf("pull %s: %v", s, err)
	}
	wantManifest, err := want.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(desc.Manifest, wantManifest) {
		t.Fatalf("pull %s: manifest differs from the one pushed:\ngot  %s\nwant %s", s, desc.Manifest, wantManifest)
	}
	m, err := want.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	repo := ref(t, d.Host+"/"+s).Context()
	for _, blob := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		checkBlob(t, repo.Digest(blob.Digest.String()), blob.Size)
	}
}

// checkBlob fetches a blob and checks its size and digest.
func checkBlob(t *testing.T, dgst name.Digest, size int64) {
	t.Helper()
	l, err := remote.Layer(dgst)
	if err != nil {
		t.Fatalf("pull %s: %v", dgst, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatalf("pull %s: %v", dgst, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("pull %s: %v", dgst, err)
	}
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != dgst.DigestStr() || n != size {
		t.Fatalf("pull %s: got %d bytes with digest %s, want %d bytes", dgst, n, got, size)
	}
}

// manifestDigest returns the Docker-Content-Digest Disco gives for repo's manifest ref.
func manifestDigest(t *testing.T, d *Disco, repo, reference string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodHead, d.URL("/v2/"+repo+"/manifests/"+reference), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", manifestTypes)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("HEAD %s: %s", req.URL, res.Status)
	}
	return res.Header.Get("Docker-Content-Digest")
}
