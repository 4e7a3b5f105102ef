package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"

	"github.com/discoregistry/disco/internal/kubotest"
)

// Global addressing: after a tagged push, Disco files an image under a repository named by
// its manifest digest in hex (tags latest and the CID) and one named by a CID (tag
// latest), both read-only; another Disco peered with it pulls the image by that CID over
// IPFS.

// TestGlobalDocker pushes an image with docker to A and follows it under the names Disco
// gives it: the digest repository on A, the CID on B (peered with A, over IPFS), the same
// CID on C given the same image under another name, and B again once restarted with A
// gone.
func TestGlobalDocker(t *testing.T) {
	t.Parallel()
	dk := needDocker(t)
	lookTool(t, "skopeo")
	a := newDisco(t, discoOptions{})
	b := newDisco(t, discoOptions{Peers: []string{a.PeerAddr()}})
	c := newDisco(t, discoOptions{Peers: []string{a.PeerAddr()}})
	for _, d := range []*Disco{a, b, c} {
		d.Start()
	}

	pushed := a.Host + "/app/x:v1"
	imageID := dk.importRandom(t, pushed, 4<<20)
	digest := dockerPush(t, dk, pushed)
	hex := strings.TrimPrefix(digest, "sha256:")
	cid := cidOf(t, a, digest)

	// docker pull -a takes every tag of the digest repository: latest and the CID.
	byDigest := a.Host + "/" + hex
	out := dk.run(t, "pull", "-a", byDigest)
	for _, tag := range []string{"latest", cid} {
		if !strings.Contains(out, tag+": Pulling from "+hex) {
			t.Errorf("docker pull -a %s did not pull tag %s:\n%s", byDigest, tag, out)
		}
		var repoDigests []string
		if err := json.Unmarshal([]byte(dk.run(t, "image", "inspect", "--format", "{{json .RepoDigests}}", byDigest+":"+tag)), &repoDigests); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(repoDigests, byDigest+"@"+digest) {
			t.Errorf("%s:%s has RepoDigests %q, want %s@%s among them", byDigest, tag, repoDigests, byDigest, digest)
		}
	}
	if got := dk.run(t, "images", "--format", "{{.Tag}}", byDigest); !sameSet(strings.Fields(got), []string{"latest", cid}) {
		t.Errorf("docker images %s lists tags %q, want latest and %s", byDigest, got, cid)
	}

	// Pulled again, with nothing of the image left in dockerd, the pushed name still pulls.
	dk.run(t, "rmi", pushed, byDigest+":latest", byDigest+":"+cid)
	dockerPull(t, dk, pushed, digest, imageID)
	dk.run(t, "rmi", pushed)

	// B pulls it by CID: from A's IPFS node, which is all B knows of A.
	byCID := b.Host + "/" + cid
	dockerPull(t, dk, byCID, digest, imageID)
	pulled := pullLayout(t, byCID, false)
	checkLayout(t, pulled, digest)

	// The same image, copied by skopeo from what B gave into C under another name, gets the
	// same CID on C.
	skopeoPush(t, "oci:"+pulled, c.Host+"/elsewhere/y:v2")
	if got := cidOf(t, c, digest); got != cid {
		t.Errorf("the same image on C has CID %s, on A %s", got, cid)
	}

	// B keeps what it cloned: restarted while A is stopped, it still serves the image.
	a.Stop()
	b.Stop()
	b.Restart()
	dk.run(t, "rmi", byCID)
	dockerPull(t, dk, byCID, digest, imageID)
	if got := tagsOf(t, b, cid); !sameSet(got, []string{"latest"}) {
		t.Errorf("after a restart, B's %s has tags %q, want latest", cid, got)
	}
}

// TestGlobalHashesOnly checks that with disco.hashesonly a pushed name is removed once the
// image is filed under its digest and CID, which pull.
func TestGlobalHashesOnly(t *testing.T) {
	t.Parallel()
	lookTool(t, "skopeo")
	d := startDisco(t, discoOptions{YAML: "disco: {hashesonly: true}"})
	img := randomImage(t, 2<<20, 2)
	digest := imageDigest(t, img).String()
	skopeoPush(t, layoutOf(t, img), d.Host+"/app/x:v1")

	send(t, http.MethodGet, d.URL("/v2/app/x/tags/list"), nil).expect(t, reply{404, "NAME_UNKNOWN"})
	send(t, http.MethodGet, d.URL("/v2/app/x/manifests/v1"), nil, "Accept", manifestTypes).
		expect(t, reply{404, "NAME_UNKNOWN"}, reply{404, "MANIFEST_UNKNOWN"})
	cid := cidOf(t, d, digest)
	hex := imageDigest(t, img).Hex
	for _, name := range []string{hex + ":latest", hex + ":" + cid, cid + ":latest"} {
		checkLayout(t, pullLayout(t, d.Host+"/"+name, false), digest)
	}
}

// TestGlobalMultiArch pushes an image index of several platforms with skopeo --all to A
// and pulls it by CID from B: the index, every platform's manifest and every blob come
// back with their digests.
func TestGlobalMultiArch(t *testing.T) {
	t.Parallel()
	lookTool(t, "skopeo")
	a := startDisco(t, discoOptions{})
	b := startDisco(t, discoOptions{Peers: []string{a.PeerAddr()}})

	dir, digest, want := writeIndexLayout(t, "v1",
		v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	skopeo(t, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "oci:"+dir+":v1", "docker://"+a.Host+"/multi/arch:v1")
	cid := cidOf(t, a, digest)
	pulled := pullLayout(t, b.Host+"/"+cid, true)
	if got := checkLayout(t, pulled, digest); !sameSet(got, want) {
		t.Errorf("pulled by CID from B: %d manifests and blobs, want %d:\ngot  %q\nwant %q", len(got), len(want), got, want)
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(layoutBlob(t, pulled, readIndexJSON(t, pulled).Manifests[0]), &index); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range index.Manifests {
		if m.Platform != nil {
			got = append(got, m.Platform.String())
		}
	}
	if !sameSet(got, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("the index pulled by CID lists platforms %q, want linux/amd64 and linux/arm64/v8", got)
	}
}

// TestGlobalReadOnly checks that repositories named by a digest or a CID refuse pushes
// and deletes, from docker, skopeo and plain HTTP, and still serve their image after.
func TestGlobalReadOnly(t *testing.T) {
	t.Parallel()
	dk := needDocker(t)
	lookTool(t, "skopeo")
	a := startDisco(t, discoOptions{})
	b := startDisco(t, discoOptions{Peers: []string{a.PeerAddr()}})

	pushed := a.Host + "/app/x:v1"
	imageID := dk.importRandom(t, pushed, 1<<20)
	digest := dockerPush(t, dk, pushed)
	hex := strings.TrimPrefix(digest, "sha256:")
	cid := cidOf(t, a, digest)
	pulled := pullLayout(t, b.Host+"/"+cid, false) // B clones it

	for _, target := range []string{b.Host + "/" + cid + ":x", a.Host + "/" + hex + ":x", a.Host + "/" + cid + ":x"} {
		dk.run(t, "tag", pushed, target)
		if _, err := dk.try("push", target); err == nil || !strings.Contains(err.Error(), "denied") {
			t.Errorf("docker push %s: %v, want it denied", target, err)
		}
		_, err := trySkopeo(t, "copy", "--preserve-digests", "--dest-tls-verify=false", "oci:"+pulled, "docker://"+target)
		if err == nil || !strings.Contains(err.Error(), "denied") {
			t.Errorf("skopeo copy to %s: %v, want it denied", target, err)
		}
	}
	for _, r := range []struct {
		d    *Disco
		repo string
	}{{a, hex}, {a, cid}, {b, cid}} {
		for _, ref := range []string{digest, "latest"} {
			u := r.d.URL("/v2/" + r.repo + "/manifests/" + ref)
			res := send(t, http.MethodDelete, u, nil)
			if got := res.reply(); got != (reply{403, "DENIED"}) {
				t.Errorf("DELETE %s: %d %q, want 403 DENIED; body %s", u, got.status, got.code, res.body)
			}
		}
	}

	if got := tagsOf(t, a, hex); !sameSet(got, []string{"latest", cid}) {
		t.Errorf("after the refused writes, A's %s has tags %q, want latest and %s", hex, got, cid)
	}
	for _, d := range []*Disco{a, b} {
		if got := tagsOf(t, d, cid); !sameSet(got, []string{"latest"}) {
			t.Errorf("after the refused writes, %s's %s has tags %q, want latest", d.Host, cid, got)
		}
	}
	for _, ref := range []string{a.Host + "/" + hex, a.Host + "/" + cid, b.Host + "/" + cid} {
		checkLayout(t, pullLayout(t, ref, false), digest)
	}
	dk.run(t, "rmi", "--force", imageID) // and every tag of it
	dockerPull(t, dk, b.Host+"/"+cid, digest, imageID)
}

// TestGlobalUnknownCID checks that a pull by a CID no node holds fails within about
// disco.clonetimeout, and that with disco.noclone a CID a peer holds is not pulled.
func TestGlobalUnknownCID(t *testing.T) {
	t.Parallel()
	dk := needDocker(t)
	lookTool(t, "skopeo")
	a := startDisco(t, discoOptions{})
	b := startDisco(t, discoOptions{YAML: "disco: {clonetimeout: 10s}", Peers: []string{a.PeerAddr()}})
	n := startDisco(t, discoOptions{YAML: "disco: {noclone: true}", Peers: []string{a.PeerAddr()}})
	// docker asks for the manifest more than once: the whole pull must take the clone
	// timeout once, not once a request.
	const bound = 16 * time.Second

	unknown := randomCID(t)
	start := time.Now()
	out, err := dk.try("pull", b.Host+"/"+unknown)
	took := time.Since(start)
	t.Logf("docker pull of unknown CID %s: %s, %v", unknown, took.Round(time.Millisecond), err)
	if err == nil {
		t.Errorf("docker pull %s/%s succeeded:\n%s", b.Host, unknown, out)
	}
	if took > bound {
		t.Errorf("docker pull of an unknown CID failed after %s, want less than %s with a 10s clone timeout", took, bound)
	}
	// Asked again soon, the answer comes at once.
	start = time.Now()
	send(t, http.MethodGet, b.URL("/v2/"+unknown+"/manifests/latest"), nil, "Accept", manifestTypes).
		expect(t, reply{404, "NAME_UNKNOWN"})
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("GET of an unknown CID's manifest, again, answered after %s, want at once", took)
	}

	// A holds this CID; N, which has disco.noclone, does not take it from A, B does.
	img := randomImage(t, 1<<20, 1)
	digest := imageDigest(t, img).String()
	skopeoPush(t, layoutOf(t, img), a.Host+"/app/x:v1")
	cid := cidOf(t, a, digest)
	start = time.Now()
	send(t, http.MethodGet, n.URL("/v2/"+cid+"/manifests/latest"), nil, "Accept", manifestTypes).
		expect(t, reply{404, "NAME_UNKNOWN"})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("with noclone, GET of a CID's manifest answered after %s, want at once", took)
	}
	if out, err := dk.try("pull", n.Host+"/"+cid); err == nil {
		t.Errorf("docker pull %s/%s from a Disco with noclone succeeded:\n%s", n.Host, cid, out)
	}
	checkLayout(t, pullLayout(t, b.Host+"/"+cid, false), digest)
}

// TestGlobalPullRightAfterStart pulls by CID from a Disco that has just started, peered
// with one that holds the image: the pull must not wait for the node to find its peer.
// Kubo's peering service (boxo/peering) first dials 7.5 to 12.5 s after start; Disco
// dials its peers at once.
func TestGlobalPullRightAfterStart(t *testing.T) {
	t.Parallel()
	lookTool(t, "skopeo")
	a := startDisco(t, discoOptions{})
	img := randomImage(t, 1<<20, 1)
	digest := imageDigest(t, img).String()
	skopeoPush(t, layoutOf(t, img), a.Host+"/app/x:v1")
	cid := cidOf(t, a, digest)

	const cloneTimeout = 5 * time.Second
	b := startDisco(t, discoOptions{YAML: fmt.Sprintf("disco: {clonetimeout: %s}", cloneTimeout), Peers: []string{a.PeerAddr()}})
	start := time.Now()
	res := send(t, http.MethodGet, b.URL("/v2/"+cid+"/manifests/latest"), nil, "Accept", manifestTypes)
	if res.status != http.StatusOK {
		t.Fatalf("right after B started, GET /v2/%s/manifests/latest on B answered %d after %s: %s\n"+
			"B's node did not reach its peer A within the %s clone timeout",
			cid, res.status, time.Since(start).Round(time.Millisecond), res.body, cloneTimeout)
	}
	checkLayout(t, pullLayout(t, b.Host+"/"+cid, false), digest)
}

// TestGlobalLyingRepository serves B, from a Kubo daemon that stands for a foreign IPFS
// node, CID repositories whose disco.json maps a digest to other bytes: one lies about a
// layer, one about the manifest. B must refuse both and keep nothing of them, so that the
// genuine image is served as it is afterwards.
func TestGlobalLyingRepository(t *testing.T) {
	t.Parallel()
	lookTool(t, "skopeo")
	k := kubotest.New(t)
	a := startDisco(t, discoOptions{})
	const cloneTimeout = 30 * time.Second
	metrics := fmt.Sprintf("127.0.0.1:%d", kubotest.FreePorts(t, 1)[0])
	b := newDisco(t, discoOptions{
		YAML:  fmt.Sprintf("disco: {clonetimeout: %s}\nhttp: {debug: {addr: %q, prometheus: {enabled: true, path: /metrics}}}", cloneTimeout, metrics),
		Peers: []string{k.PeerAddr()},
	})
	k.Start(a.PeerAddr(), b.PeerAddr())
	b.Start()

	img := randomImage(t, 2<<20, 2)
	h := imageDigest(t, img)
	digest := h.String()
	src := "oci:" + writeLayout(t, img, "v1") + ":v1"
	skopeoPush(t, src, a.Host+"/app/x:v1")
	cid := cidOf(t, a, digest)

	// Kubo takes the genuine repository and its blobs from A. A then stops: B, peered with
	// Kubo alone, gets everything from Kubo.
	k.Run("swarm", "connect", a.PeerAddr())
	genuine := filepath.Join(t.TempDir(), "genuine")
	k.Run("--timeout=2m", "get", "-o", genuine, "/ipfs/"+cid)
	blobs := readDiscoJSON(t, genuine)
	k.Run(append([]string{"--timeout=2m", "pin", "add", "--progress=false"}, slices.Collect(maps.Values(blobs))...)...)
	if got := k.Add(genuine); got != cid {
		t.Fatalf("ipfs add of the repository directory Disco made gives %s, Disco gave %s", got, cid)
	}
	a.Stop()

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	otherBytes := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(otherBytes, randomBytes(t, 3<<19), 0o644); err != nil {
		t.Fatal(err)
	}
	// The other manifest names the same config and layers: only its digest gives it away.
	otherManifest := filepath.Join(t.TempDir(), "manifest.json")
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m.Annotations = map[string]string{"org.example.lie": "not the pushed manifest"}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherManifest, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	lyingLayer := k.Add(lyingRepository(t, genuine, layer.Hex, k.Add(otherBytes)))
	lyingManifest := k.Add(lyingRepository(t, genuine, h.Hex, k.Add(otherManifest)))
	k.Run("swarm", "connect", b.PeerAddr())

	// Each lie must be found out, not timed out: B answers well within its clone timeout.
	t.Run("manifest", func(t *testing.T) {
		// First, while B holds nothing of the image, so that a lie B took in would stay.
		start := time.Now()
		dst := "oci:" + filepath.Join(t.TempDir(), "pulled")
		if _, err := trySkopeo(t, "copy", "--src-tls-verify=false", "docker://"+b.Host+"/"+lyingManifest, dst); err == nil {
			t.Errorf("skopeo pulled %s, whose disco.json maps manifest %s to other bytes", lyingManifest, digest)
		}
		for _, ref := range []string{"latest", digest} {
			send(t, http.MethodGet, b.URL("/v2/"+lyingManifest+"/manifests/"+ref), nil, "Accept", manifestTypes).
				expect(t, reply{404, "NAME_UNKNOWN"})
		}
		if took := time.Since(start); took > cloneTimeout/3 {
			t.Errorf("refusing the lying manifest took %s, want well under the %s clone timeout", took, cloneTimeout)
		}
	})

	t.Run("layer", func(t *testing.T) {
		// The manifest checks out; the layer is found out when fetched, in the background or
		// for the client, and then the whole repository is refused.
		start := time.Now()
		dst := "oci:" + filepath.Join(t.TempDir(), "pulled")
		if _, err := trySkopeo(t, "copy", "--src-tls-verify=false", "docker://"+b.Host+"/"+lyingLayer, dst); err == nil {
			t.Errorf("skopeo pulled %s, whose disco.json maps layer %s to other bytes", lyingLayer, layer)
		}
		send(t, http.MethodGet, b.URL("/v2/"+lyingLayer+"/blobs/"+layer.String()), nil).
			expect(t, reply{404, "NAME_UNKNOWN"}, reply{404, "BLOB_UNKNOWN"})
		send(t, http.MethodGet, b.URL("/v2/"+lyingLayer+"/manifests/latest"), nil, "Accept", manifestTypes).
			expect(t, reply{404, "NAME_UNKNOWN"})
		if took := time.Since(start); took > cloneTimeout/3 {
			t.Errorf("refusing the lying layer took %s, want well under the %s clone timeout", took, cloneTimeout)
		}
		if n := metric(t, metrics, `disco_clone_failures_total{reason="mismatch"}`); n < 1 {
			t.Errorf("disco_clone_failures_total{reason=\"mismatch\"} is %v after a lying layer, want at least 1", n)
		}
	})
	// Nothing of the lies was kept under the genuine digests: the genuine image, pushed to
	// B and pulled into it by its CID (from Kubo), is served byte for byte.
	skopeoPush(t, src, b.Host+"/later/push:v1")
	checkImage(t, b, "later/push:v1", img)
	checkImage(t, b, cid+":latest", img)
	checkLayout(t, pullLayout(t, b.Host+"/"+cid, false), digest)
}

// metric returns the value of a sample, such as name{label="value"}, that the Prometheus
// endpoint on addr serves, or 0 when there is no such sample.
func metric(t *testing.T, addr, sample string) float64 {
	t.Helper()
	res := send(t, http.MethodGet, "http://"+addr+"/metrics", nil)
	if res.status != http.StatusOK {
		t.Fatalf("GET http://%s/metrics: %d %s", addr, res.status, res.body)
	}
	for _, line := range strings.Split(string(res.body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("metrics: %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// cidOf returns the CID under which d filed the manifest digest: the tag of the digest
// repository other than latest. It checks there are exactly those two tags.
func cidOf(t *testing.T, d *Disco, digest string) string {
	t.Helper()
	hex := strings.TrimPrefix(digest, "sha256:")
	tags := tagsOf(t, d, hex)
	var c string
	for _, tag := range tags {
		if tag != "latest" {
			c = tag
		}
	}
	if len(tags) != 2 || !slices.Contains(tags, "latest") || !strings.HasPrefix(c, "bafy") {
		t.Fatalf("digest repository %s on %s has tags %q, want latest and a CID v1 (bafy...)", hex, d.Host, tags)
	}
	if parsed, err := cid.Decode(c); err != nil || parsed.Version() != 1 {
		t.Fatalf("tag %s of %s on %s is not a CID v1: %v", c, hex, d.Host, err)
	}
	return c
}

// tagsOf returns the tags of repo on d.
func tagsOf(t *testing.T, d *Disco, repo string) []string {
	t.Helper()
	res := send(t, http.MethodGet, d.URL("/v2/"+repo+"/tags/list"), nil)
	var list struct{ Tags []string }
	if res.status != http.StatusOK || json.Unmarshal(res.body, &list) != nil {
		t.Fatalf("GET /v2/%s/tags/list on %s: %d %s", repo, d.Host, res.status, res.body)
	}
	return list.Tags
}

var pulledDigest = regexp.MustCompile(`Digest: (sha256:[0-9a-f]{64})`)

// dockerPush pushes ref with docker and returns the digest docker reports.
func dockerPush(t *testing.T, dk *docker, ref string) string {
	t.Helper()
	out := dk.run(t, "push", ref)
	m := pushedDigest.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("docker push %s printed no digest:\n%s", ref, out)
	}
	return m[1]
}

// dockerPull pulls ref with docker, which must not hold the image's layers, and checks
// the manifest digest and image ID it gets.
func dockerPull(t *testing.T, dk *docker, ref, digest, imageID string) {
	t.Helper()
	out := dk.run(t, "pull", ref)
	if m := pulledDigest.FindStringSubmatch(out); m == nil || m[1] != digest {
		t.Errorf("docker pull %s: want digest %s, got:\n%s", ref, digest, out)
	}
	if !strings.Contains(out, "Pull complete") {
		t.Errorf("docker pull %s downloaded no layer (dockerd had them already?):\n%s", ref, out)
	}
	if got := dk.run(t, "image", "inspect", "--format", "{{.Id}}", ref); got != imageID {
		t.Errorf("docker pull %s: image ID %s, want %s", ref, got, imageID)
	}
}

// pullLayout copies ref, on a plain-HTTP registry, into a new OCI layout with skopeo,
// keeping manifests as they are (a Docker manifest stays one), every platform of an index
// if all is set, and returns the layout's directory. The image has no ref name in the
// layout: skopeo 1.9.3 finds Docker manifests in a layout only when asked for none
// ("oci:<dir>").
func pullLayout(t *testing.T, ref string, all bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pulled")
	args := []string{"copy", "--preserve-digests", "--src-tls-verify=false"}
	if all {
		args = append(args, "--all")
	}
	skopeo(t, append(args, "docker://"+ref, "oci:"+dir)...)
	return dir
}

// checkLayout checks that the OCI layout dir holds the manifest digest, and under it
// every manifest and blob with the digest and size it is referenced by. It returns the
// digests it checked.
func checkLayout(t *testing.T, dir, digest string) []string {
	t.Helper()
	index := readIndexJSON(t, dir)
	if len(index.Manifests) != 1 || index.Manifests[0].Digest.String() != digest {
		t.Fatalf("layout %s holds %v, want only %s", dir, index.Manifests, digest)
	}
	seen := map[string]bool{}
	var walk func(desc v1.Descriptor)
	walk = func(desc v1.Descriptor) {
		seen[desc.Digest.String()] = true
		var m struct {
			Config    *v1.Descriptor
			Layers    []v1.Descriptor
			Manifests []v1.Descriptor
		}
		if err := json.Unmarshal(layoutBlob(t, dir, desc), &m); err != nil {
			t.Fatalf("manifest %s: %v", desc.Digest, err)
		}
		for _, child := range m.Manifests {
			walk(child)
		}
		if m.Config != nil {
			m.Layers = append(m.Layers, *m.Config)
		}
		for _, blob := range m.Layers {
			layoutBlob(t, dir, blob)
			seen[blob.Digest.String()] = true
		}
	}
	walk(index.Manifests[0])
	return slices.Sorted(maps.Keys(seen))
}

// layoutBlob reads a blob of an OCI layout and checks its digest and, unless it is
// negative, its size.
func layoutBlob(t *testing.T, dir string, desc v1.Descriptor) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "blobs", desc.Digest.Algorithm, desc.Digest.Hex))
	if err != nil {
		t.Fatalf("layout %s lacks %s: %v", dir, desc.Digest, err)
	}
	got := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
	if got != desc.Digest.String() || desc.Size >= 0 && int64(len(b)) != desc.Size {
		t.Fatalf("layout %s: blob %s has %d bytes with digest %s, want %d bytes", dir, desc.Digest, len(b), got, desc.Size)
	}
	return b
}

// writeIndexLayout writes an OCI layout holding, under tag, an image index with a random
// image for each platform, and returns its directory, the index's digest and the digests
// of the index, its manifests and their blobs.
func writeIndexLayout(t *testing.T, tag string, platforms ...v1.Platform) (dir, digest string, all []string) {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        randomImage(t, 1<<20, 2),
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	dir = filepath.Join(t.TempDir(), "layout")
	l, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for i, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.WriteImage(img); err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, desc.Digest.String(), m.Config.Digest.String())
		for _, layer := range m.Layers {
			all = append(all, layer.Digest.String())
		}
		// go-containerregistry gives every descriptor an artifactType (image-spec 1.1);
		// skopeo 1.9.3 knows image-spec 1.0 only and, told to preserve digests, refuses
		// to copy an index that has them.
		im.Manifests[i].ArtifactType = ""
	}
	raw, err := json.Marshal(im)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteBlob(h, io.NopCloser(bytes.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendDescriptor(v1.Descriptor{
		MediaType: types.OCIImageIndex, Digest: h, Size: int64(len(raw)),
		Annotations: map[string]string{"org.opencontainers.image.ref.name": tag},
	}); err != nil {
		t.Fatal(err)
	}
	return dir, h.String(), append(all, h.String())
}

// readIndexJSON reads the index.json of an OCI layout.
func readIndexJSON(t *testing.T, dir string) v1.IndexManifest {
	t.Helper()
	var index v1.IndexManifest
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err == nil {
		err = json.Unmarshal(b, &index)
	}
	if err != nil {
		t.Fatalf("layout %s: index.json: %v", dir, err)
	}
	return index
}

// readDiscoJSON reads the disco.json of a CID repository directory: CIDs by digest.
func readDiscoJSON(t *testing.T, dir string) map[string]string {
	t.Helper()
	var dj struct {
		Blobs []struct{ Digest, CID string }
	}
	b, err := os.ReadFile(filepath.Join(dir, "disco.json"))
	if err == nil {
		err = json.Unmarshal(b, &dj)
	}
	if err != nil || len(dj.Blobs) == 0 {
		t.Fatalf("%s/disco.json: %v: %s", dir, err, b)
	}
	m := map[string]string{}
	for _, blob := range dj.Blobs {
		m[blob.Digest] = blob.CID
	}
	return m
}

// lyingRepository copies the CID repository directory genuine, with its disco.json
// changed to map the digest hex to the CID c, and returns the copy.
func lyingRepository(t *testing.T, genuine, hex, c string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lying")
	if err := os.CopyFS(dir, os.DirFS(genuine)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "disco.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var dj struct {
		Blobs []map[string]string `json:"blobs"`
	}
	if err := json.Unmarshal(b, &dj); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, blob := range dj.Blobs {
		if blob["digest"] == hex {
			blob["cid"], found = c, true
		}
	}
	if !found {
		t.Fatalf("%s lists no blob %s: %s", p, hex, b)
	}
	if b, err = json.Marshal(dj); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// randomCID returns a valid CID v1 of a directory no one holds.
func randomCID(t *testing.T) string {
	t.Helper()
	mh, err := multihash.Sum(randomBytes(t, 64), multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.DagProtobuf, mh).String()
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
