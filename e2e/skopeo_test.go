package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// skopeo runs skopeo with args, without a trust policy, and returns its standard output.
func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := trySkopeo(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// trySkopeo runs skopeo as skopeo does, and returns its standard output or an error with
// its standard error.
func trySkopeo(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(lookTool(t, "skopeo"), append([]string{"--insecure-policy"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("skopeo %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// writeLayout writes img to a new OCI layout directory under the tag and returns it.
func writeLayout(t *testing.T, img v1.Image, tag string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag,
	})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// layoutOf writes img to a new OCI layout, tagged v1, and returns its skopeo reference.
func layoutOf(t *testing.T, img v1.Image) string {
	t.Helper()
	return "oci:" + writeLayout(t, img, "v1") + ":v1"
}

// skopeoPush copies src (a skopeo reference) into Disco at dst ("host/repo:tag"),
// keeping digests; extra are more flags for skopeo copy.
func skopeoPush(t *testing.T, src, dst string, extra ...string) {
	t.Helper()
	args := append([]string{"copy", "--preserve-digests", "--dest-tls-verify=false"}, extra...)
	skopeo(t, append(args, src, "docker://"+dst)...)
}

func TestSkopeoRoundTrip(t *testing.T) {
	t.Parallel()
	lookTool(t, "skopeo")
	d := startDisco(t, discoOptions{})
	img := randomImage(t, 3<<20, 2)
	want := imageDigest(t, img).String()

	src := "oci:" + writeLayout(t, img, "v1") + ":v1"
	dst := filepath.Join(t.TempDir(), "copied")
	registry := "docker://" + d.Host + "/e2e/skopeo:v1"

	// rawDigest is the digest of the manifest skopeo reads at ref.
	rawDigest := func(ref string, flags ...string) string {
		raw := skopeo(t, append(append([]string{"inspect", "--raw"}, flags...), ref)...)
		return fmt.Sprintf("sha256:%x", sha256.Sum256(raw))
	}
	if got := rawDigest(src); got != want {
		t.Fatalf("source layout holds manifest %s, want %s", got, want)
	}
	skopeo(t, "copy", "--preserve-digests", "--dest-tls-verify=false", src, registry)
	if got := rawDigest(registry, "--tls-verify=false"); got != want {
		t.Errorf("after copy into Disco, its manifest is %s, want %s", got, want)
	}
	if got := manifestDigest(t, d, "e2e/skopeo", "v1"); got != want {
		t.Errorf("Disco's Docker-Content-Digest for e2e/skopeo:v1 is %s, want %s", got, want)
	}
	skopeo(t, "copy", "--preserve-digests", "--src-tls-verify=false", registry, "oci:"+dst+":v1")
	if got := rawDigest("oci:" + dst + ":v1"); got != want {
		t.Errorf("after copy out of Disco, the manifest is %s, want %s", got, want)
	}

	// Every blob came back whole.
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, blob := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		b, err := os.ReadFile(filepath.Join(dst, "blobs", blob.Digest.Algorithm, blob.Digest.Hex))
		if err != nil {
			t.Errorf("copied layout lacks blob %s: %v", blob.Digest, err)
			continue
		}
		if got := fmt.Sprintf("sha256:%x", sha256.Sum256(b)); got != blob.Digest.String() || int64(len(b)) != blob.Size {
			t.Errorf("copied blob %s has %d bytes with digest %s, want %d bytes", blob.Digest, len(b), got, blob.Size)
		}
	}
}
