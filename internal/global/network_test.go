package global_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/discoregistry/disco/internal/disctest"
)

// swarmKey writes a new key in the format of Kubo's swarm.key and returns its file.
func swarmKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), "swarm.key")
	if err := os.WriteFile(p, []byte("/key/swarm/psk/1.0.0/\n/base16/\n"+hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSwarmKey runs Discos in a private network: those with its key pull from each other
// by CID; one without it, or with another key, cannot even connect, and gets nothing.
func TestSwarmKey(t *testing.T) {
	key := swarmKey(t)
	private := fmt.Sprintf("storage: {ipfs: {node: {swarmkey: %s}}}\ndisco: {clonetimeout: 5s}\n", key)
	a := disctest.Start(t, private)
	b := disctest.Start(t, private, a)
	img, _ := random.Image(1<<20, 1)
	h := a.Push(t, "app/x:v1", img)
	c := a.CIDOf(t, h)
	if got := disctest.PullAll(t, b.Ref(t, c)); got != h {
		t.Errorf("a Disco with the key pulls %s, want %s", got, h)
	}
	for name, extra := range map[string]string{
		"without the key":  "disco: {clonetimeout: 5s}\n",
		"with another key": fmt.Sprintf("storage: {ipfs: {node: {swarmkey: %s}}}\ndisco: {clonetimeout: 5s}\n", swarmKey(t)),
	} {
		outsider := disctest.Start(t, extra, a)
		if code, ec := disctest.OCIError(t, http.MethodGet, outsider.URL("/v2/"+c+"/manifests/latest")); code != 404 || ec != "NAME_UNKNOWN" {
			t.Errorf("a Disco %s: %d %s, want 404 NAME_UNKNOWN", name, code, ec)
		}
	}
}

// TestDHTChain pulls by CID through a chain of four Discos with routing: dht, each of
// which knows only the one before it: the last finds the image the first holds.
func TestDHTChain(t *testing.T) {
	const dht = "storage: {ipfs: {node: {routing: dht}}}\ndisco: {clonetimeout: 60s}\n"
	a := disctest.Start(t, dht)
	b := disctest.Start(t, dht, a)
	c := disctest.Start(t, dht, b)
	d := disctest.Start(t, dht, c)
	img, _ := random.Image(1<<20, 1)
	h := a.Push(t, "app/x:v1", img)
	cid := a.CIDOf(t, h)
	start := time.Now()
	if got := disctest.PullAll(t, d.Ref(t, cid)); got != h {
		t.Errorf("the fourth Disco pulls %s, want %s", got, h)
	}
	t.Logf("found and pulled through the DHT in %s", time.Since(start).Round(time.Millisecond))
}
