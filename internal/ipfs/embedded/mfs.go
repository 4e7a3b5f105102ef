package embedded

import (
	"context"
	"errors"
	"fmt"
	gopath "path"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/kubo/core/node"

	"github.com/discoregistry/disco/internal/ipfs"
)

// withContext runs f and returns early with ctx's error if ctx ends first. MFS calls take
// no context; one left behind finishes in the background, releasing what it holds.
func withContext[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// change runs f as an MFS change: exclusively, and counted for Flush. f's context does not
// end: a change once begun is made whole. If ctx ends while
// the change waits for its turn, it is given up and never made; once it is being made, it
// is waited for. So an error from ctx means the change was not made: a caller that rolls
// back on it is never overtaken by its own change landing later.
func (n *Node) change(ctx context.Context, f func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	locked := func() error {
		_, err := onTree(n, true, func() (struct{}, error) { return struct{}{}, f(context.WithoutCancel(ctx)) })
		return err
	}
	if n.mu.TryLock() { // nothing to wait for: as lookup does
		return locked()
	}
	const waiting, running, abandoned = 0, 1, 2
	var state atomic.Int32
	done := make(chan error, 1)
	go func() {
		n.mu.Lock()
		if !state.CompareAndSwap(waiting, running) {
			n.mu.Unlock()
			return
		}
		done <- locked()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		if state.CompareAndSwap(waiting, abandoned) {
			return ctx.Err()
		}
		return <-done
	}
}

// lookup runs f on the tree, holding the lock. If the lock is free, f runs at once on the
// caller's goroutine, and runs to its end even if ctx ends meanwhile: waiting for the lock
// is what ctx must be able to cut short, and a goroutine for every lookup (its start, its
// stack grown for the blockstore's calls, the wake-up of the caller) cost a catalog walk
// about a fifth of its CPU.
func lookup[T any](ctx context.Context, n *Node, f func() (T, error)) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	if n.mu.TryLock() {
		return onTree(n, false, f)
	}
	return withContext(ctx, func() (T, error) {
		n.mu.Lock()
		return onTree(n, false, f)
	})
}

// onTree runs f on the tree, a change if change is set, with n.mu taken by the caller;
// it lets go of n.mu. A panic in f is fatal, whatever goroutine f runs on (see
// crashOnPanic).
func onTree[T any](n *Node, change bool, f func() (T, error)) (T, error) {
	defer n.mu.Unlock()
	defer crashOnPanic()
	unixfsGlobals.RLock()
	defer unixfsGlobals.RUnlock()
	defer n.tree.trim()
	n.used = time.Now()
	if change {
		n.changes++
	}
	return f()
}

// crashOnPanic, deferred while n.mu is held, makes a panic crash the process, with the
// lock still held, as it did when every MFS call ran on a goroutine of its own: recovered
// by the HTTP server, as a handler's panic is, it would leave a change made in part for the
// next checkpoint to write.
func crashOnPanic() {
	if v := recover(); v != nil {
		go panic(fmt.Sprintf("mfs: %v\n%s", v, debug.Stack()))
		select {}
	}
}

func (n *Node) statMFS(ctx context.Context, p string) (ipfs.Entry, error) {
	return lookup(ctx, n, func() (ipfs.Entry, error) {
		e, err := n.tree.stat(ctx, p)
		if err == nil {
			err = n.tree.exposed(ctx, e)
		}
		return e, err
	})
}

func (n *Node) listMFS(ctx context.Context, p string) ([]ipfs.Entry, error) {
	return lookup(ctx, n, func() ([]ipfs.Entry, error) {
		es, err := n.tree.list(ctx, p)
		if err == nil {
			err = n.tree.exposed(ctx, es...)
		}
		return es, err
	})
}

// Names implements ipfs.Namer.
func (n *Node) Names(ctx context.Context, p string) ([]string, error) {
	if ipfs.IsIPFSPath(p) {
		return ipfs.ListNames(ctx, n, p)
	}
	return lookup(ctx, n, func() ([]string, error) { return n.tree.names(ctx, p) })
}

// Link implements ipfs.Node.
func (n *Node) Link(ctx context.Context, p string, c cid.Cid) error {
	nd, ok := n.added.Get(c)
	if !ok {
		var err error
		if nd, err = n.ipfs.DAG.Get(ctx, c); err != nil {
			return fmt.Errorf("link %s: %w", c, contentError(err))
		}
	}
	return n.change(ctx, func(ctx context.Context) error {
		if err := n.tree.link(ctx, p, nd); err != nil {
			return err
		}
		n.journal.add(record{Path: p, CID: c.String()})
		return nil
	})
}

// Move implements ipfs.Node.
func (n *Node) Move(ctx context.Context, src, dst string) error {
	return n.change(ctx, func(ctx context.Context) error {
		nd, err := n.tree.nodeAt(ctx, src)
		if err != nil {
			return err
		}
		// The journal names it: a restart reads it from the blockstore.
		if err := n.tree.exposed(ctx, ipfs.Entry{CID: nd.Cid(), IsDir: true}); err != nil {
			return err
		}
		if err := n.tree.link(ctx, dst, nd); err != nil {
			return err
		}
		n.journal.add(record{Path: dst, CID: nd.Cid().String()})
		if gopath.Clean(src) == gopath.Clean(dst) {
			return nil
		}
		if err := n.tree.remove(ctx, src); err != nil {
			return err
		}
		n.journal.add(record{Path: src})
		return nil
	})
}

// Remove implements ipfs.Node.
func (n *Node) Remove(ctx context.Context, p string) error {
	return n.change(ctx, func(ctx context.Context) error {
		if err := n.tree.remove(ctx, p); err != nil {
			return err
		}
		n.journal.add(record{Path: p})
		return nil
	})
}

// Flush implements ipfs.Node: it writes the journal's new records. When the journal has
// grown large, it checkpoints too, so that starting again never has much to apply.
func (n *Node) Flush(ctx context.Context) error {
	full, err := withContext(ctx, func() (bool, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if err := n.journal.write(); err != nil {
			return false, err
		}
		return n.journal.len > journalLimit, nil
	})
	if err != nil {
		return err
	}
	// The journal, and the blocks its records name, on disk before the answer: outside
	// n.mu, so that other requests go on while the disk writes.
	if err := n.disk.Sync(ctx); err != nil || !full {
		return err
	}
	return n.checkpointNow(ctx)
}

// journalLimit is the journal size past which Flush checkpoints.
const journalLimit = 4 << 20

// checkpointEvery is how often a node with changes checkpoints.
const checkpointEvery = time.Second

// checkpoints checkpoints every checkpointEvery until ctx ends.
func (n *Node) checkpoints(ctx context.Context) {
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := n.checkpointNow(ctx); err != nil {
			n.log.Error("mfs checkpoint", "err", err)
		}
		n.idle()
	}
}

// idleAfter is how long the tree goes unused before the node lets go of what it holds.
const idleAfter = 30 * time.Second

// idle drops the directories the tree holds, once, when it has gone unused for
// idleAfter, and returns the memory to the system: a registry that was read through
// needs none of it until it is read again.
func (n *Node) idle() {
	n.mu.Lock()
	unused := time.Since(n.used) > idleAfter && !n.idled
	if unused {
		n.tree.trimTo(0)
		n.tree.lastDir, n.tree.fileSizes = nil, nil
		n.idled = true
	} else if time.Since(n.used) <= idleAfter {
		n.idled = false
	}
	n.mu.Unlock()
	if unused {
		debug.FreeOSMemory()
	}
}

// checkpointNow writes the directories changed since the last checkpoint, records the
// new root in the repository, as MFS's own publishing does, and drops from the journal the
// records the root holds. It holds n.mu to write the tree, a step at a time, and to cut
// the journal, not while the blocks written go to the blockstore (see pendingDAG) nor
// while the repository syncs the root to disk: on a busy disk that can take seconds, and
// every request would wait.
func (n *Node) checkpointNow(ctx context.Context) error {
	n.checkpointing.Lock()
	defer n.checkpointing.Unlock()
	root, changes, held, err := n.writeRoot(ctx)
	if err == nil && !root.Defined() {
		return nil // nothing changed
	}
	if err == nil {
		err = n.tree.pending.flush(ctx)
	}
	if err == nil {
		err = n.checkRoom() // the flush took some: the datastore must not fill the disk
	}
	if err == nil {
		err = n.recordRoot(ctx, root)
	}
	if err != nil {
		return fmt.Errorf("flush mfs: %w", err)
	}
	// The root on disk before the journal that leads to it is cut.
	if err := n.disk.Sync(ctx); err != nil {
		return fmt.Errorf("flush mfs: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.checkpointed = changes
	return n.journal.dropFirst(held)
}

// checkpointStep is how many directories a checkpoint writes each time it holds n.mu:
// with 10,000 images, a second of pushes changed about a thousand, and a push, which
// takes and lets go of n.mu a few dozen times, waited for about one step each time: with
// steps of 128 it waited for most of the checkpoint. After each step the checkpoint lets
// the goroutines waiting for n.mu run. The last step, which writes the large directories
// at the top, takes longest. Step checkpointSteps writes all that is left.
const (
	checkpointStep  = 4
	checkpointSteps = 2048
)

// writeRoot writes the directories changed since the last checkpoint, a step at a time,
// and returns the root's CID, with the count of changes and of journal records it holds;
// an undefined CID if nothing changed since the last checkpoint.
func (n *Node) writeRoot(ctx context.Context) (root cid.Cid, changes uint64, held int64, err error) {
	for step := 1; ; step++ {
		if err := ctx.Err(); err != nil {
			return cid.Undef, 0, 0, err
		}
		n.mu.Lock()
		if n.changes == n.checkpointed {
			n.mu.Unlock()
			return cid.Undef, 0, 0, nil
		}
		limit := checkpointStep
		if step == checkpointSteps {
			limit = 0
		}
		err = n.checkRoom() // the directories it writes need room on the disk
		if err == nil {
			unixfsGlobals.RLock()
			n.tree.pending.hold(true) // put in the blockstore by checkpointNow, unlocked
			root, err = n.tree.rootCIDPaused(ctx, limit)
			n.tree.pending.hold(false)
			unixfsGlobals.RUnlock()
		}
		if errors.Is(err, errPaused) {
			n.mu.Unlock()
			runtime.Gosched()
			continue
		}
		if err == nil {
			err = n.journal.write() // so that the file holds every record the root holds
		}
		changes, held = n.changes, n.journal.len
		n.mu.Unlock()
		return root, changes, held, err
	}
}

// recordRoot records root as the MFS root in the repository, once the blocks are synced.
func (n *Node) recordRoot(ctx context.Context, root cid.Cid) error {
	ds := n.ipfs.Repo.Datastore()
	if err := ds.Sync(ctx, blockstore.BlockPrefix); err != nil {
		return err
	}
	// flatfs, opened without sync, syncs nothing above: the file system does.
	if err := n.disk.Sync(ctx); err != nil {
		return err
	}
	if err := ds.Put(ctx, node.FilesRootDatastoreKey, root.Bytes()); err != nil {
		return err
	}
	return ds.Sync(ctx, node.FilesRootDatastoreKey)
}

// replay applies the records of a journal left by a process that stopped before its
// checkpoint. A record that cannot be applied (its content is gone, or a later record
// undid what it needs) is skipped: the records after it set the final state.
func (n *Node) replay(ctx context.Context, recs []record) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, rec := range recs {
		err := n.apply(ctx, rec)
		if err != nil {
			n.log.Warn("mfs journal: record skipped", "path", rec.Path, "cid", rec.CID, "err", err)
		}
		n.changes++
	}
}

func (n *Node) apply(ctx context.Context, rec record) error {
	if rec.CID == "" {
		err := n.tree.remove(ctx, rec.Path)
		if errors.Is(err, ipfs.ErrNotFound) {
			return nil
		}
		return err
	}
	c, err := cid.Decode(rec.CID)
	if err != nil {
		return err
	}
	// Only what is local: starting must not wait on the network.
	nd, err := n.local.Get(ctx, c)
	if err != nil {
		return contentError(err)
	}
	return n.tree.link(ctx, rec.Path, nd)
}
