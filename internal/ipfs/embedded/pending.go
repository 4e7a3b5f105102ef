package embedded

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// pendingDAG is the tree's DAG service. While a checkpoint writes the tree (holding is
// set), the directory blocks written are kept in memory instead of the blockstore, and
// flush puts them there afterwards, without the node's lock: putting each block in
// flatfs (a file created and renamed) was most of a checkpoint's time under the lock, and
// at 10,000 images a push waited for a whole checkpoint, a tenth of every second.
//
// Until flushed, the blocks are read from memory. Whatever leaves the tree with the CID of
// a directory (a stat or a listing, a root, a directory moved and journaled) must flush
// first, since the node's blockstore is what the rest of Disco, the network and a restart
// read: see tree.exposed. While blocks wait, every block added waits too, so that a
// directory whose own block is in the blockstore has all of its own there: only a held
// CID needs a flush. After a flush fails (a disk that refuses writes), nothing more is
// held until one succeeds: memory does not grow with every checkpoint, and writes fail
// where they are made, as they did before.
type pendingDAG struct {
	ipld.DAGService // the blockstore

	mu      sync.Mutex
	holding bool
	failed  bool // the last flush failed
	blocks  map[cid.Cid]ipld.Node
}

func newPendingDAG(dag ipld.DAGService) *pendingDAG {
	return &pendingDAG{DAGService: dag, blocks: map[cid.Cid]ipld.Node{}}
}

// hold sets whether blocks added are kept in memory.
func (p *pendingDAG) hold(on bool) {
	p.mu.Lock()
	p.holding = on
	p.mu.Unlock()
}

// mustFlush reports whether c, about to leave the tree, needs a flush first: it is held,
// or blocks are held while new ones are not (see pendingDAG).
func (p *pendingDAG) mustFlush(c cid.Cid) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, held := p.blocks[c]
	return held || (p.failed && len(p.blocks) > 0)
}

// flush puts the blocks kept in memory in the blockstore, and then forgets them. It may
// run alongside the tree's operations, and alongside another flush.
func (p *pendingDAG) flush(ctx context.Context) error {
	p.mu.Lock()
	nds := slices.Collect(maps.Values(p.blocks))
	p.mu.Unlock()
	if len(nds) == 0 {
		return nil
	}
	err := p.DAGService.AddMany(ctx, nds)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed = err != nil
	if err != nil {
		return err // kept: the next flush tries again
	}
	for _, nd := range nds {
		delete(p.blocks, nd.Cid())
	}
	return nil
}

func (p *pendingDAG) Add(ctx context.Context, nd ipld.Node) error {
	if p.keep(nd) {
		return nil
	}
	return p.DAGService.Add(ctx, nd)
}

func (p *pendingDAG) AddMany(ctx context.Context, nds []ipld.Node) error {
	var rest []ipld.Node
	for _, nd := range nds {
		if !p.keep(nd) {
			rest = append(rest, nd)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	return p.DAGService.AddMany(ctx, rest)
}

// keep keeps nd in memory if holding is set or blocks wait, unless a flush failed, and
// reports whether it did.
func (p *pendingDAG) keep(nd ipld.Node) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := (p.holding || len(p.blocks) > 0) && !p.failed
	if keep {
		p.blocks[nd.Cid()] = nd
	}
	return keep
}

func (p *pendingDAG) held(c cid.Cid) (ipld.Node, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	nd, ok := p.blocks[c]
	return nd, ok
}

func (p *pendingDAG) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	if nd, ok := p.held(c); ok {
		return nd, nil
	}
	return p.DAGService.Get(ctx, c)
}

func (p *pendingDAG) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	var held []ipld.Node
	var rest []cid.Cid
	for _, c := range cs {
		if nd, ok := p.held(c); ok {
			held = append(held, nd)
		} else {
			rest = append(rest, c)
		}
	}
	if len(held) == 0 {
		return p.DAGService.GetMany(ctx, cs)
	}
	// Room for every answer, as merkledag's: the goroutine never waits for the reader.
	out := make(chan *ipld.NodeOption, len(cs))
	for _, nd := range held {
		out <- &ipld.NodeOption{Node: nd}
	}
	if len(rest) == 0 {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		for o := range p.DAGService.GetMany(ctx, rest) {
			out <- o
		}
	}()
	return out
}

func (p *pendingDAG) Remove(ctx context.Context, c cid.Cid) error {
	p.mu.Lock()
	delete(p.blocks, c)
	p.mu.Unlock()
	return p.DAGService.Remove(ctx, c)
}

func (p *pendingDAG) RemoveMany(ctx context.Context, cs []cid.Cid) error {
	p.mu.Lock()
	for _, c := range cs {
		delete(p.blocks, c)
	}
	p.mu.Unlock()
	return p.DAGService.RemoveMany(ctx, cs)
}
