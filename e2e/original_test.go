package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/discoregistry/disco/internal/kubotest"
)

// originalAdd are the import parameters of the original Disco's Kubo nodes, Kubo's old
// defaults: CID v0, no raw leaves, 256 KiB chunks.
var originalAdd = []string{"add", "-Q", "--cid-version=0", "--raw-leaves=false", "--chunker=size-262144"}

// TestGlobalOriginalLayout pulls, by CID, a repository laid out and imported the way the
// original Disco made them: blobs imported with Kubo's old defaults, a disco.json of hex
// digests and CID v0s, an empty _uploads directory, and the repository named by the CID
// v1 of a CID v0 directory.
func TestGlobalOriginalLayout(t *testing.T) {
	t.Parallel()
	k := kubotest.New(t)
	b := newDisco(t, discoOptions{Peers: []string{k.PeerAddr()}})
	k.Start(b.PeerAddr())
	b.Start()

	img := randomImage(t, 2<<20, 2)
	dir := filepath.Join(t.TempDir(), "repo")
	var blobs []map[string]string
	link := func(p string, d v1.Hash) {
		writeFile(t, filepath.Join(dir, p, d.Algorithm, d.Hex, "link"), []byte(d.String()))
	}
	addBlob := func(d v1.Hash, r io.Reader) {
		f := filepath.Join(t.TempDir(), "blob")
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, f, b)
		blobs = append(blobs, map[string]string{"digest": d.Hex, "cid": k.Run(append(originalAdd, f)...)})
	}

	manifest, _ := img.RawManifest()
	h := imageDigest(t, img)
	addBlob(h, bytes.NewReader(manifest))
	link("_manifests/revisions", h)
	link("_manifests/tags/latest/index", h)
	writeFile(t, filepath.Join(dir, "_manifests/tags/latest/current/link"), []byte(h.String()))
	cfg, _ := img.RawConfigFile()
	cfgName, _ := img.ConfigName()
	addBlob(cfgName, bytes.NewReader(cfg))
	link("_layers", cfgName)
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		addBlob(d, rc)
		rc.Close()
		link("_layers", d)
	}
	if err := os.MkdirAll(filepath.Join(dir, "_uploads"), 0o755); err != nil {
		t.Fatal(err)
	}
	dj, err := json.Marshal(map[string]any{"blobs": blobs})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "disco.json"), append(dj, '\n'))
	v0 := k.Run("add", "-r", "-Q", "--cid-version=0", "--raw-leaves=false", dir)
	name := k.Run("cid", "format", "-v", "1", "-b", "base32", v0)

	checkImage(t, b, name+":latest", img)
	checkImage(t, b, fmt.Sprintf("%s@%s", name, h), img)
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
