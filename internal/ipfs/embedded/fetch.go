package embedded

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// How a node fetches a file when other nodes fetch it at the same moment.
//
// A layer is a few inner nodes and many raw leaves of 1 MiB, its bytes. boxo's DAG walk
// fetches the leaves in the file's order in one bitswap session, so every node pulling
// the layer at once asks for the same leaves first, from the only node that has them,
// and each session keeps asking the node that sent it most: that node sends every leaf
// to every puller. Here a node fetches the leaves it lacks in a bitswap session each,
// which asks every connected node for the leaf and takes it from the first that says it
// has it, and it chooses the next leaves by what the other nodes ask it for (their
// wantlists, which bitswap keeps): a leaf another node asks for is being fetched, so it
// waits until that node has it; a leaf a node asked for and no longer does is there, and
// comes quickly; the rest most likely come from the node that has them all, so of those
// it keeps only about a second's worth on the way. The pullers each fetch a different
// part from the origin and the rest from each other, and a busy origin, whose answers
// queue behind what it sends, answers last. Leaves are chosen at random among the next
// leafWindow, so a reader, which takes them in order, gets the start early. Bitswap
// checks every block against its CID, as before, and any node that speaks bitswap, a
// stock Kubo among them, serves and is served the same way.

const (
	// leafFetches is how many leaves one fetch gets at a time at most.
	leafFetches = 16
	// leafWindow is how far ahead in the file a fetch looks for its next leaves: far
	// enough that nodes pulling at once pick different ones.
	leafWindow = 64
	// minLeafSize is the size from which a raw leaf is fetched on its own: smaller ones,
	// the files of a repository directory, come with the inner nodes.
	minLeafSize = 256 << 10
	// minPutOff is the least time a leaf another node asks for is put off; the most is
	// twice the longest fetch of a leaf so far.
	minPutOff = time.Second
	// leafRecheck is how often a fetch waiting to start more leaves looks again at what
	// the other nodes ask for.
	leafRecheck = 50 * time.Millisecond
)

// fetching records the leaves being fetched, so that a read, or another fetch, waits for
// them instead of asking the network again.
type fetching struct {
	mu     sync.Mutex
	leaves map[cid.Cid]*leafFetch
}

// A leafFetch is one leaf being fetched: done is closed, with err set, once it is local
// or its fetch stopped.
type leafFetch struct {
	done chan struct{}
	err  error
}

// claim records the leaves nobody fetches yet as fetched by the caller, who must end
// each of the fetches returned.
func (f *fetching) claim(cs []cid.Cid) map[cid.Cid]*leafFetch {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leaves == nil {
		f.leaves = map[cid.Cid]*leafFetch{}
	}
	mine := map[cid.Cid]*leafFetch{}
	for _, c := range cs {
		if _, ok := f.leaves[c]; !ok {
			lf := &leafFetch{done: make(chan struct{})}
			f.leaves[c], mine[c] = lf, lf
		}
	}
	return mine
}

func (f *fetching) end(c cid.Cid, lf *leafFetch, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lf.err = err
	close(lf.done)
	delete(f.leaves, c)
}

func (f *fetching) has(c cid.Cid) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.leaves[c]
	return ok
}

// wait waits until c is not being fetched, and reports whether the fetch that was under
// way got it.
func (f *fetching) wait(ctx context.Context, c cid.Cid) (bool, error) {
	f.mu.Lock()
	lf := f.leaves[c]
	f.mu.Unlock()
	if lf == nil {
		return false, nil
	}
	select {
	case <-lf.done:
		return lf.err == nil, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Fetch implements ipfs.Node: the inner nodes of the DAG and its small leaves in one
// bitswap session, level by level, then its other leaves as fetchLeaves does.
func (n *Node) Fetch(ctx context.Context, c cid.Cid) error {
	n.redial()
	leaves, err := n.fetchInner(ctx, c)
	if err == nil {
		err = n.fetchLeaves(ctx, leaves, n.fetching.claim(leaves))
	}
	if err != nil {
		return fmt.Errorf("fetch %s: %w", c, contentError(err))
	}
	return nil
}

// fetchInner fetches the nodes of the DAG c but its raw leaves of minLeafSize bytes or
// more, and returns those that are not local, in the DAG's order.
func (n *Node) fetchInner(ctx context.Context, c cid.Cid) ([]cid.Cid, error) {
	ses := merkledag.NewSession(ctx, n.ipfs.DAG)
	seen := cid.NewSet()
	var leaves []cid.Cid
	// A raw root is a leaf of unknown size: it is fetched on its own.
	level := []*ipld.Link{{Cid: c, Size: minLeafSize}}
	for len(level) > 0 {
		var get []cid.Cid
		for _, l := range level {
			if !seen.Visit(l.Cid) {
				continue
			}
			if l.Cid.Type() != cid.Raw || l.Size < minLeafSize {
				get = append(get, l.Cid)
				continue
			}
			have, err := n.ipfs.Blockstore.Has(ctx, l.Cid)
			if err != nil {
				return nil, err
			}
			if !have {
				leaves = append(leaves, l.Cid)
			}
		}
		// GetMany gives the nodes in any order: the next level is put back in the order
		// of this one.
		links := map[cid.Cid][]*ipld.Link{}
		for o := range ses.GetMany(ctx, get) {
			if o.Err != nil {
				return nil, o.Err
			}
			links[o.Node.Cid()] = o.Node.Links()
		}
		if len(links) < len(get) { // GetMany gives up when ctx ends
			return nil, ctx.Err()
		}
		level = nil
		for _, c := range get {
			level = append(level, links[c]...)
		}
	}
	return leaves, nil
}

// fetchLeaves makes leaves local: those in mine, claimed by the caller, it fetches, in a
// bitswap session each, in the order a leafQueue gives; for the others it waits, and
// fetches them if their fetch failed.
func (n *Node) fetchLeaves(ctx context.Context, leaves []cid.Cid, mine map[cid.Cid]*leafFetch) (err error) {
	q := &leafQueue{queue: slices.Clone(leaves), mine: mine, putOff: map[cid.Cid]time.Time{}, asked: cid.NewSet()}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		for _, c := range q.queue { // claimed, never started: no read should wait for them
			if lf, ok := mine[c]; ok {
				n.fetching.end(c, lf, fmt.Errorf("fetch of %s stopped: %w", c, err))
			}
		}
	}()
	start := time.Now()
	defer func() {
		n.log.Debug("fetched leaves", "leaves", len(leaves), "new", q.started[leafNew], "held", q.started[leafHeld],
			"put off", len(q.putOff), "took", time.Since(start), "err", err)
	}()

	type result struct {
		kind leafKind
		took time.Duration
		err  error
	}
	results := make(chan result)
	for len(q.queue) > 0 && err == nil || q.running[leafAny] > 0 {
		var recheck <-chan time.Time
		if err == nil {
			for c, kind := range q.next(n.wantedByPeers(), time.Now()) {
				go func() {
					start := time.Now()
					err := n.fetchLeaf(ctx, c, mine[c])
					results <- result{kind, time.Since(start), err}
				}()
			}
			if len(q.queue) > 0 && q.running[leafAny] < leafFetches {
				recheck = time.After(leafRecheck)
			}
		}
		done := ctx.Done()
		if err != nil {
			done = nil // only the fetches under way are left to wait for
		}
		select {
		case r := <-results:
			q.ended(r.kind, r.took, time.Now())
			if r.err != nil && err == nil {
				err = r.err
				cancel()
			}
		case <-recheck:
		case <-done:
			err = ctx.Err()
		}
	}
	return err
}

// fetchLeaf fetches c, claimed by the caller as lf if lf is not nil, or waits for the
// fetch that claimed it.
func (n *Node) fetchLeaf(ctx context.Context, c cid.Cid, lf *leafFetch) error {
	if lf == nil {
		got, err := n.fetching.wait(ctx, c)
		if err != nil || got {
			return err
		}
	}
	// With no session in ctx, the block service starts one for this block alone.
	_, err := n.ipfs.Blocks.GetBlock(ctx, c)
	if lf != nil {
		n.fetching.end(c, lf, err)
	}
	return err
}

// wantedByPeers returns the blocks that connected nodes have asked this one for and
// not got yet.
func (n *Node) wantedByPeers() *cid.Set {
	wanted := cid.NewSet()
	if n.ipfs.Bitswap == nil {
		return wanted
	}
	for _, p := range n.ipfs.PeerHost.Network().Peers() {
		for _, c := range n.ipfs.Bitswap.WantlistForPeer(p) {
			wanted.Add(c)
		}
	}
	return wanted
}

// leafKind says where a leaf is likely to come from.
type leafKind int

const (
	leafAny   leafKind = iota // all kinds, in counts
	leafNew                   // from a node that has them all: no node asked for it
	leafHeld                  // from a node that asked for it and has it now
	leafOther                 // from the fetch that claimed it
	leafKinds
)

// leafQueue is the order in which one fetch starts its leaves.
type leafQueue struct {
	queue   []cid.Cid // not started, in the file's order
	mine    map[cid.Cid]*leafFetch
	putOff  map[cid.Cid]time.Time // leaves put off, since when
	asked   *cid.Set              // leaves another node has asked for
	running [leafKinds]int
	started [leafKinds]int
	arrived []time.Time // when new leaves arrived, over the last second
	slowest time.Duration
}

// next removes from the queue the leaves to start now, given what the other nodes ask
// for, and returns them with their kind. It looks at the first leafWindow leaves of the
// queue in a random order.
func (q *leafQueue) next(wanted *cid.Set, now time.Time) map[cid.Cid]leafKind {
	q.arrived = slices.DeleteFunc(q.arrived, func(t time.Time) bool { return now.Sub(t) > time.Second })
	start := map[cid.Cid]leafKind{}
	for _, i := range rand.Perm(min(len(q.queue), leafWindow)) {
		if q.running[leafAny] >= leafFetches {
			break
		}
		c := q.queue[i]
		kind := leafHeld
		_, mine := q.mine[c]
		switch {
		case !mine:
			kind = leafOther
		case wanted.Has(c):
			q.asked.Add(c)
			since, ok := q.putOff[c]
			if !ok {
				since, q.putOff[c] = now, now
			}
			if now.Sub(since) < max(minPutOff, 2*q.slowest) {
				continue
			}
			kind = leafNew // the other node is slow to get it: from where it gets it
		case !q.asked.Has(c):
			kind = leafNew
		}
		// About a second's worth of new leaves on the way, and at least two.
		if kind == leafNew && q.running[leafNew] >= 2+len(q.arrived) {
			continue
		}
		q.running[leafAny]++
		q.running[kind]++
		q.started[kind]++
		start[c] = kind
	}
	q.queue = slices.DeleteFunc(q.queue, func(c cid.Cid) bool { _, ok := start[c]; return ok })
	return start
}

// ended records that the fetch of a leaf of kind ended at now, after took.
func (q *leafQueue) ended(kind leafKind, took time.Duration, now time.Time) {
	q.running[leafAny]--
	q.running[kind]--
	q.slowest = max(q.slowest, took)
	if kind == leafNew {
		q.arrived = append(q.arrived, now)
	}
}

// fileLeaves returns the raw leaves of the file nd that hold its bytes from offset on, in
// order, getting the inner nodes it needs from ng. It returns none for what is not a file.
func fileLeaves(ctx context.Context, ng ipld.NodeGetter, nd ipld.Node, offset uint64) ([]cid.Cid, error) {
	pn, ok := nd.(*merkledag.ProtoNode)
	if !ok {
		return nil, nil // a raw node holds its bytes itself
	}
	fsn, err := ft.FSNodeFromBytes(pn.Data())
	if err != nil {
		return nil, fmt.Errorf("%s: not UnixFS: %w", nd.Cid(), err)
	}
	if fsn.Type() != ft.TFile && fsn.Type() != ft.TRaw {
		return nil, nil // the reader says what it is
	}
	if fsn.NumChildren() != len(pn.Links()) {
		return nil, fmt.Errorf("%s: %d links for %d block sizes", nd.Cid(), len(pn.Links()), fsn.NumChildren())
	}
	var leaves []cid.Cid
	start := uint64(len(fsn.Data()))
	for i, l := range pn.Links() {
		end := start + fsn.BlockSize(i)
		switch {
		case end <= offset:
		case l.Cid.Type() == cid.Raw:
			leaves = append(leaves, l.Cid)
		default:
			child, err := ng.Get(ctx, l.Cid)
			if err != nil {
				return nil, err
			}
			below, err := fileLeaves(ctx, ng, child, max(offset, start)-start)
			if err != nil {
				return nil, err
			}
			leaves = append(leaves, below...)
		}
		start = end
	}
	return leaves, nil
}

// prefetch starts fetching, in the background until stop is called, the leaves of the
// file nd from offset on that are not local and that nobody fetches yet. It returns once
// it has claimed them, so that a read through waiting, started after it, waits for them
// rather than asking the network for them itself, in the file's order.
func (n *Node) prefetch(ctx context.Context, nd ipld.Node, offset uint64) (stop func(), err error) {
	leaves, err := fileLeaves(ctx, merkledag.NewSession(ctx, n.ipfs.DAG), nd, offset)
	if err != nil {
		return nil, err
	}
	var missing []cid.Cid
	for _, c := range leaves {
		have, err := n.ipfs.Blockstore.Has(ctx, c)
		if err != nil {
			return nil, err
		}
		if !have {
			missing = append(missing, c)
		}
	}
	mine := n.fetching.claim(missing)
	if len(mine) == 0 {
		return func() {}, nil
	}
	missing = slices.DeleteFunc(missing, func(c cid.Cid) bool { return mine[c] == nil })
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A failed leaf is fetched again by the read, which reports the error.
		if err := n.fetchLeaves(ctx, missing, mine); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Debug("prefetch", "cid", nd.Cid(), "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// waiting is a node getter that, for a leaf being fetched, waits for that fetch before it
// gets the leaf from the getter it wraps.
type waiting struct {
	ipld.NodeGetter
	f *fetching
}

func (w waiting) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	if _, err := w.f.wait(ctx, c); err != nil {
		return nil, err
	}
	return w.NodeGetter.Get(ctx, c)
}

func (w waiting) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	out := make(chan *ipld.NodeOption, len(cs)) // one option for each at most: sends never block
	var wg sync.WaitGroup
	var rest []cid.Cid
	for _, c := range cs {
		if !w.f.has(c) {
			rest = append(rest, c)
			continue
		}
		wg.Go(func() {
			nd, err := w.Get(ctx, c)
			out <- &ipld.NodeOption{Node: nd, Err: err}
		})
	}
	if len(rest) > 0 {
		wg.Go(func() {
			for o := range w.NodeGetter.GetMany(ctx, rest) {
				out <- o
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}
