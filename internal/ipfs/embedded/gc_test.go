package embedded

import (
	"context"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
)

// TestCollectGarbage keeps what MFS links and what it is told to keep, and removes the
// rest.
func TestCollectGarbage(t *testing.T) {
	ctx := context.Background()
	o := Options{Path: t.TempDir(), Swarm: loopback}
	n := open(t, o)
	linked, dropped, kept := addString(t, n, "linked"), addString(t, n, "dropped"), addString(t, n, "kept")
	if err := n.Link(ctx, "/d/linked", linked); err != nil {
		t.Fatal(err)
	}
	if err := n.Link(ctx, "/d/gone", dropped); err != nil {
		t.Fatal(err)
	}
	if err := n.checkpointNow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Remove(ctx, "/d/gone"); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	off, err := OpenOffline(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := off.CollectGarbage(ctx, []cid.Cid{kept})
	if err != nil {
		t.Fatal(err)
	}
	if err := off.Close(); err != nil {
		t.Fatal(err)
	}
	if stats.Blocks == 0 {
		t.Error("nothing removed")
	}

	n = open(t, o)
	if b, err := ipfs.ReadFile(ctx, n, "/d/linked", 10); err != nil || string(b) != "linked" {
		t.Errorf("/d/linked after gc: %q, %v", b, err)
	}
	for c, want := range map[cid.Cid]bool{linked: true, kept: true, dropped: false} {
		if have, err := n.ipfs.Blockstore.Has(ctx, c); err != nil || have != want {
			t.Errorf("block %s after gc: have %v (%v), want %v", c, have, err, want)
		}
	}
}
