package embedded

import (
	"context"
	"errors"
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
	if nd, _ := dag.Get(ctx, b.Cid()); nd != nil {
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

// TestMoveDuringCheckpoint moves a directory that a checkpoint in progress wrote: the
// journal names it, so it is in the blockstore, all of it, when the move is acknowledged.
func TestMoveDuringCheckpoint(t *testing.T) {
	ctx := context.Background()
	n := open(t, Options{Path: t.TempDir(), Swarm: loopback})
	fillRepositories(t, n, 20)
	c := addString(t, n, "new")
	if err := n.Link(ctx, "/repositories/r7/_manifests/tags/new/link", c); err != nil {
		t.Fatal(err)
	}
	n.checkpointing.Lock()
	defer n.checkpointing.Unlock()
	if _, _, _, err := n.writeRoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Move(ctx, "/repositories/r7", "/moved"); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock() // what the journal names, read as a restart would, not through a Stat
	nd, err := n.tree.nodeAt(ctx, "/moved")
	n.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := merkledag.Walk(ctx, merkledag.GetLinksWithDAG(n.local), nd.Cid(), cid.NewSet().Visit); err != nil {
		t.Errorf("a directory moved during a checkpoint is not in the blockstore: %v", err)
	}
}

// failingDAG refuses every write.
type failingDAG struct{ ipld.DAGService }

var errRefused = errors.New("refused")

func (failingDAG) Add(context.Context, ipld.Node) error       { return errRefused }
func (failingDAG) AddMany(context.Context, []ipld.Node) error { return errRefused }

// pending reports whether blocks wait to be flushed.
func (p *pendingDAG) pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.blocks) > 0
}

// TestPendingDAGStopsHoldingAfterAFailedFlush checks that blocks are not kept in memory
// for ever on a disk that refuses them: after a failed flush, adds fail where they are
// made.
func TestPendingDAGStopsHoldingAfterAFailedFlush(t *testing.T) {
	ctx := context.Background()
	_, dag := memTree(t)
	p := newPendingDAG(failingDAG{dag})
	p.hold(true)
	first := merkledag.NodeWithData(ft.FilePBData([]byte("first"), 5))
	if err := p.Add(ctx, first); err != nil {
		t.Fatal(err)
	}
	p.hold(false)
	if err := p.flush(ctx); !errors.Is(err, errRefused) {
		t.Fatalf("flush: %v, want the blockstore's error", err)
	}
	p.hold(true)
	if err := p.Add(ctx, merkledag.NodeWithData(ft.FilePBData([]byte("second"), 6))); !errors.Is(err, errRefused) {
		t.Errorf("an add after a failed flush: %v, want the blockstore's error", err)
	}
	if !p.mustFlush(cid.Undef) {
		t.Error("after a failed flush, a directory leaving the tree does not flush")
	}
	if nd, err := p.Get(ctx, first.Cid()); err != nil || nd.Cid() != first.Cid() {
		t.Errorf("a block held: %v, %v", nd, err)
	}
}
