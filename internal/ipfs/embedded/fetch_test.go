package embedded

import (
	"bytes"
	"context"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/discoregistry/disco/internal/ipfs/ipfstest"
)

// TestFetchTogether has two nodes pull one file from a third at once, each peered with
// both others: one with Fetch and then Read, the other with Read alone. Both must read
// the file.
func TestFetchTogether(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	origin := open(t, Options{Path: t.TempDir(), Swarm: loopback})
	b := open(t, Options{Path: t.TempDir(), Swarm: loopback, Peers: addrs(t, origin)})
	c := open(t, Options{Path: t.TempDir(), Swarm: loopback, Peers: append(addrs(t, origin), addrs(t, b)...)})
	want := ipfstest.Content(8<<20+5, 3)
	root, err := origin.Add(ctx, files.NewBytesFile(want))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, pull := range []struct {
		name  string
		n     *Node
		fetch bool
	}{{"Fetch and Read", b, true}, {"Read", c, false}} {
		wg.Go(func() {
			if pull.fetch {
				if err := pull.n.Fetch(ctx, root); err != nil {
					t.Errorf("%s: Fetch: %v", pull.name, err)
					return
				}
			}
			r, err := pull.n.Read(ctx, "/ipfs/"+root.String(), 0)
			if err != nil {
				t.Errorf("%s: %v", pull.name, err)
				return
			}
			defer r.Close()
			if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: read %d bytes (%v), want the %d added", pull.name, len(got), err, len(want))
			}
		})
	}
	wg.Wait()
}

func addrs(t *testing.T, n *Node) []string {
	t.Helper()
	id, err := n.Identity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return id.Addresses
}

// TestLeafQueue checks the order a fetch starts its leaves in, given what the other nodes
// ask for.
func TestLeafQueue(t *testing.T) {
	leaves := make([]cid.Cid, 6)
	mine := map[cid.Cid]*leafFetch{}
	for i := range leaves {
		h, err := mh.Sum([]byte{byte(i)}, mh.SHA2_256, -1)
		if err != nil {
			t.Fatal(err)
		}
		leaves[i] = cid.NewCidV1(cid.Raw, h)
		mine[leaves[i]] = &leafFetch{}
	}
	q := &leafQueue{queue: slices.Clone(leaves), mine: mine, putOff: map[cid.Cid]time.Time{}, asked: cid.NewSet()}
	now := time.Now()
	wanted := cid.NewSet()
	wanted.Add(leaves[0])

	// Nobody has any yet: two at first, not the one another node is fetching.
	started := q.next(wanted, now)
	if len(started) != 2 || started[leaves[0]] != 0 {
		t.Fatalf("first leaves started: %v, want two new ones, not the one asked for", started)
	}
	for _, kind := range started {
		if kind != leafNew {
			t.Errorf("started a leaf as %d, want new (%d)", kind, leafNew)
		}
	}
	// One arrives: three may be on the way.
	q.ended(leafNew, 100*time.Millisecond, now)
	if got := q.next(wanted, now); len(got) != 2 {
		t.Errorf("after one arrived, started %d more, want 2 (three on the way)", len(got))
	}
	// The other node has it: it is taken from there at once, whatever is on the way.
	if got := q.next(cid.NewSet(), now); len(got) != 1 || got[leaves[0]] != leafHeld {
		t.Errorf("once the other node had it, started %v, want leaf 0 as held", got)
	}

	// A leaf another node asks for too long is fetched as a new one.
	q = &leafQueue{queue: slices.Clone(leaves[:1]), mine: mine, putOff: map[cid.Cid]time.Time{}, asked: cid.NewSet()}
	if got := q.next(wanted, now); len(got) != 0 {
		t.Errorf("started %v while another node fetched it", got)
	}
	if got := q.next(wanted, now.Add(minPutOff)); len(got) != 1 || got[leaves[0]] != leafNew {
		t.Errorf("after %s put off, started %v, want it as new", minPutOff, got)
	}
}

// TestReadWaitsForFetch checks that a read of a leaf being fetched waits for that fetch
// instead of getting the leaf itself.
func TestReadWaitsForFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := open(t, Options{Path: t.TempDir(), Swarm: loopback})
	c := addString(t, n, "leaf")
	var f fetching
	lf := f.claim([]cid.Cid{c})[c]
	got := make(chan error, 1)
	go func() {
		_, err := waiting{NodeGetter: n.ipfs.DAG, f: &f}.Get(ctx, c)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Get returned (%v) while the leaf was being fetched", err)
	case <-time.After(200 * time.Millisecond):
	}
	f.end(c, lf, nil)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if f.has(c) {
		t.Error("the leaf is still recorded as being fetched")
	}
}

// TestFileLeaves checks which leaves hold a file's bytes from an offset on.
func TestFileLeaves(t *testing.T) {
	ctx := context.Background()
	n := open(t, Options{Path: t.TempDir(), Swarm: loopback})
	c, err := n.Add(ctx, files.NewBytesFile(ipfstest.Content(5<<20+7, 1)))
	if err != nil {
		t.Fatal(err)
	}
	nd, err := n.local.Get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		offset uint64
		want   int
	}{{0, 6}, {1<<20 - 1, 6}, {1 << 20, 5}, {2<<20 + 1, 4}, {5 << 20, 1}, {5<<20 + 7, 0}} {
		leaves, err := fileLeaves(ctx, n.local, nd, tt.offset)
		if err != nil || len(leaves) != tt.want {
			t.Errorf("fileLeaves from %d = %d leaves (%v), want %d", tt.offset, len(leaves), err, tt.want)
			continue
		}
		if all := nd.Links(); len(leaves) > 0 && leaves[0] != all[len(all)-tt.want].Cid {
			t.Errorf("fileLeaves from %d starts at %s, want %s", tt.offset, leaves[0], all[len(all)-tt.want].Cid)
		}
	}
}
