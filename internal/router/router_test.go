package router

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/testsuites"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/ipfs/embedded"
)

func TestKey(t *testing.T) {
	for p, want := range map[string]string{
		"/docker/registry/v2/blobs/sha256/ab/abcd/data":                       "blob sha256:abcd",
		"/docker/registry/v2/blobs/sha256/ab/abcd":                            "blob sha256:abcd",
		"/docker/registry/v2/repositories/org/app/_manifests/tags/v1/current": "repository org/app",
		"/docker/registry/v2/repositories/app/_layers/sha256/abcd/link":       "repository app",
		"/docker/registry/v2/repositories/org/app/_uploads/u1/data":           "upload u1",
		"/docker/registry/v2/repositories/org/app/_uploads/u1":                "upload u1",
		"/docker/registry/v2/repositories/org/app/_uploads":                   "",
		"/other/thing": "path other",
		"/docker/registry/v2/repositories/org/app": "",
		"/docker/registry/v2/repositories":         "",
		"/docker/registry/v2/blobs/sha256/ab":      "",
		"/docker/registry":                         "",
		"/":                                        "",
	} {
		if got, _ := key(p); got != want {
			t.Errorf("key(%s) = %q, want %q", p, got, want)
		}
	}
}

// TestPlacement places many blobs on three nodes, then four: each node gets about a third,
// and the fourth takes about a quarter from the others, moving nothing else.
func TestPlacement(t *testing.T) {
	nodes := func(n int) *Router {
		var ns []Node
		for i := range n {
			ns = append(ns, Node{Name: fmt.Sprintf("http://node%d:5001", i)})
		}
		r, err := New(ns)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	three, four := nodes(3), nodes(4)
	const n = 30000
	count := make([]int, 3)
	moved := 0
	for i := range n {
		k := fmt.Sprintf("blob sha256:%064x", i)
		a, b := three.r.owner(k), four.r.owner(k)
		count[a]++
		if a != b {
			if b != 3 {
				t.Fatalf("adding a node moved %s from node %d to node %d", k, a, b)
			}
			moved++
		}
	}
	for i, c := range count {
		if c < n/3*9/10 || c > n/3*11/10 {
			t.Errorf("node %d holds %d of %d, want about a third", i, c, n)
		}
	}
	if moved < n/4*9/10 || moved > n/4*11/10 {
		t.Errorf("adding a fourth node moved %d of %d, want about a quarter", moved, n)
	}
}

// twoNodes returns a router over two embedded nodes, peered.
func twoNodes(t *testing.T) *Router {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := embedded.Open(ctx, embedded.Options{Path: t.TempDir(), Swarm: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	id, err := a.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := embedded.Open(ctx, embedded.Options{Path: t.TempDir(), Swarm: []string{"/ip4/127.0.0.1/tcp/0"}, Peers: id.Addresses})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	uploads := t.TempDir()
	var ns []Node
	for i, n := range []*embedded.Node{a, b} {
		s, err := driver.New(n, "/", uploads)
		if err != nil {
			t.Fatal(err)
		}
		ns = append(ns, Node{Name: fmt.Sprint(i), Store: s, IPFS: n})
	}
	r, err := New(ns)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSuite runs Distribution's storage driver suite over a router of two embedded nodes,
// peered.
func TestSuite(t *testing.T) {
	r := twoNodes(t)
	testsuites.Driver(t, func() (storagedriver.StorageDriver, error) { return r, nil }, false)
}

// TestPurgeUploads has Distribution's upload purger find stale uploads on both nodes:
// they go, and the fresh one stays.
func TestPurgeUploads(t *testing.T) {
	ctx := context.Background()
	r := twoNodes(t)
	const uploads = "/docker/registry/v2/repositories/app/x/_uploads/"
	stale := []string{}
	for i := range 8 {
		id := fmt.Sprintf("01a23419-2551-7aa4-8d2d-2f10216460%02d", i)
		started := time.Now().Add(-48 * time.Hour)
		if i == 0 {
			started = time.Now()
		} else {
			stale = append(stale, id)
		}
		if err := r.PutContent(ctx, uploads+id+"/startedat", []byte(started.UTC().Format(time.RFC3339))); err != nil {
			t.Fatal(err)
		}
	}
	deleted, errs := storage.PurgeUploads(ctx, r, time.Now().Add(-24*time.Hour), true)
	if len(errs) > 0 || len(deleted) != len(stale) {
		t.Fatalf("PurgeUploads deleted %d, errors %v; want the %d stale uploads", len(deleted), errs, len(stale))
	}
	for _, id := range stale {
		if _, err := r.Stat(ctx, uploads+id); !driver.IsNotFound(err) {
			t.Errorf("stale upload %s after the purge: %v", id, err)
		}
	}
	if _, err := r.Stat(ctx, uploads+"01a23419-2551-7aa4-8d2d-2f1021646000/startedat"); err != nil {
		t.Errorf("the fresh upload after the purge: %v", err)
	}
}
