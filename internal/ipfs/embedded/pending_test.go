package embedded

import (
	"context"
	"fmt"
	"testing"

	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// TestCheckpointWritesBlocksAfter checks that a checkpoint writes the tree's blocks to
// the blockstore after the steps that hold the lock, and that a stat of a directory in
// between, whose CID the caller may read from the blockstore, finds all of it there.
func TestCheckpointWritesBlocksAfter(t *testing.T) {
	ctx := context.Background()
	n := open(t, Options{Path: t.TempDir(), Swarm: loopback})
	fillRepositories(t, n, 50)
	c := addString(t, n, "new")
	for i := range 50 {
		if err := n.Link(ctx, fmt.Sprintf("/repositories/r%d/_manifests/tags/new/link", i), c); err != nil {
			t.Fatal(err)
		}
	}
	n.checkpointing.Lock() // as checkpointNow does, up to the flush
	root, _, _, err := n.writeRoot(ctx)
	if err != nil || !root.Defined() {
		t.Fatalf("writeRoot: %s, %v", root, err)
	}
	if has, err := n.ipfs.Blockstore.Has(ctx, root); err != nil || has {
		t.Fatalf("the root is in the blockstore before the flush (%v, %v)", has, err)
	}
	// Read through the tree meanwhile: from memory.
	if st, err := n.Stat(ctx, "/repositories/r7/_manifests/tags/new/link"); err != nil || st.CID != c {
		t.Fatalf("Stat of a file meanwhile: %v, %v", st, err)
	}
	st, err := n.Stat(ctx, "/repositories/r7")
	if err != nil || !st.IsDir {
		t.Fatalf("Stat of a directory meanwhile: %v, %v", st, err)
	}
	// What the stat named is in the blockstore, all of it.
	if err := merkledag.Walk(ctx, merkledag.GetLinksWithDAG(n.local), st.CID, cid.NewSet().Visit); err != nil {
		t.Errorf("a directory stat named during a checkpoint is not in the blockstore: %v", err)
	}
	if err := n.tree.pending.flush(ctx); err != nil {
		t.Fatal(err)
	}
	n.checkpointing.Unlock()
	if n.tree.pending.pending() {
		t.Error("blocks left after the flush")
	}
	if err := merkledag.Walk(ctx, merkledag.GetLinksWithDAG(n.local), root, cid.NewSet().Visit); err != nil {
		t.Errorf("the root after the flush: %v", err)
	}
	if err := n.checkpointNow(ctx); err != nil {
		t.Fatal(err)
	}
	if stored := storedRoot(t, n); stored != root {
		t.Errorf("stored root %s, want %s", stored, root)
	}
}

// TestPendingDAGGetMany checks that GetMany returns blocks held and stored alike.
func TestPendingDAGGetMany(t *testing.T) {
	ctx := context.Background()
	_, dag := memTree(t)
	p := newPendingDAG(dag)
	stored := ft.FilePBData([]byte("stored"), 6)
	a := merkledag.NodeWithData(stored)
	if err := p.Add(ctx, a); err != nil {
		t.Fatal(err)
	}
	p.hold(true)
	b := merkledag.NodeWithData(ft.FilePBData([]byte("held"), 4))
	if err := p.AddMany(ctx, []ipld.Node{b}); err != nil {
		t.Fatal(err)
	}
	p.hold(false)
	if has, _ := dag.Get(ctx, b.Cid()); has != nil {
		t.Fatal("a block added while holding is in the blockstore")
	}
	got := map[cid.Cid]bool{}
	for o := range p.GetMany(ctx, []cid.Cid{a.Cid(), b.Cid()}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		got[o.Node.Cid()] = true
	}
	if !got[a.Cid()] || !got[b.Cid()] || len(got) != 2 {
		t.Errorf("GetMany: %v, want both", got)
	}
	if err := p.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := dag.Get(ctx, b.Cid()); err != nil {
		t.Errorf("after the flush: %v", err)
	}
}
