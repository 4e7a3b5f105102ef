package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	gopath "path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/mfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
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

// change runs f as an MFS change: exclusively, and counted for Flush. If ctx ends while
// the change waits for its turn, it is given up and never made; once it is being made, it
// is waited for. So an error from ctx means the change was not made: a caller that rolls
// back on it is never overtaken by its own change landing later.
func (n *Node) change(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	const waiting, running, abandoned = 0, 1, 2
	var state atomic.Int32
	done := make(chan error, 1)
	go func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if !state.CompareAndSwap(waiting, running) {
			return
		}
		n.changes++
		done <- f()
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

// lookup runs f on the MFS entry at p, holding the lookup lock.
func lookup[T any](ctx context.Context, n *Node, p string, f func(mfs.FSNode) (T, error)) (T, error) {
	return withContext(ctx, func() (T, error) {
		n.mu.RLock()
		defer n.mu.RUnlock()
		fsn, err := mfs.Lookup(n.root, p)
		if err != nil {
			var zero T
			return zero, mfsError(p, err)
		}
		return f(fsn)
	})
}

// mfsError maps MFS's errors to the ones ipfs.Node promises.
func mfsError(p string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), strings.Contains(err.Error(), "Not a directory"):
		return fmt.Errorf("%s: %w", p, ipfs.ErrNotFound)
	default:
		return fmt.Errorf("%s: %w", p, err)
	}
}

func entryOf(name string, fsn mfs.FSNode) (ipfs.Entry, error) {
	nd, err := fsn.GetNode()
	if err != nil {
		return ipfs.Entry{}, err
	}
	e := ipfs.Entry{Name: name, CID: nd.Cid(), IsDir: fsn.Type() == mfs.TDir}
	if f, ok := fsn.(*mfs.File); ok {
		if e.Size, err = f.Size(); err != nil {
			return ipfs.Entry{}, err
		}
	}
	return e, nil
}

func (n *Node) statMFS(ctx context.Context, p string) (ipfs.Entry, error) {
	return lookup(ctx, n, p, func(fsn mfs.FSNode) (ipfs.Entry, error) {
		return entryOf(gopath.Base(p), fsn)
	})
}

func (n *Node) listMFS(ctx context.Context, p string) ([]ipfs.Entry, error) {
	return lookup(ctx, n, p, func(fsn mfs.FSNode) ([]ipfs.Entry, error) {
		dir, ok := fsn.(*mfs.Directory)
		if !ok {
			return nil, fmt.Errorf("%s: %w", p, ipfs.ErrNotDir)
		}
		var out []ipfs.Entry
		err := dir.ForEachEntry(ctx, func(l mfs.NodeListing) error {
			c, err := cid.Decode(l.Hash)
			if err != nil {
				return err
			}
			out = append(out, ipfs.Entry{Name: l.Name, IsDir: l.Type == int(mfs.TDir), Size: l.Size, CID: c})
			return nil
		})
		ipfs.SortEntries(out)
		return out, err
	})
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
	return n.change(ctx, func() error {
		if err := n.link(p, nd); err != nil {
			return err
		}
		n.journal.add(record{Path: p, CID: c.String()})
		return nil
	})
}

// link places nd at p, creating missing parent directories.
func (n *Node) link(p string, nd ipld.Node) error {
	dir, name := gopath.Split(p)
	d, err := n.mkdirAll(dir)
	if err != nil {
		return err
	}
	return replace(d, name, nd)
}

// Move implements ipfs.Node.
func (n *Node) Move(ctx context.Context, src, dst string) error {
	return n.change(ctx, func() error {
		fsn, err := mfs.Lookup(n.root, src)
		if err != nil {
			return mfsError(src, err)
		}
		nd, err := fsn.GetNode()
		if err != nil {
			return err
		}
		if err := n.link(dst, nd); err != nil {
			return err
		}
		n.journal.add(record{Path: dst, CID: nd.Cid().String()})
		if gopath.Clean(src) == gopath.Clean(dst) {
			return nil
		}
		if err := n.unlink(src); err != nil {
			return err
		}
		n.journal.add(record{Path: src})
		return nil
	})
}

// Remove implements ipfs.Node.
func (n *Node) Remove(ctx context.Context, p string) error {
	return n.change(ctx, func() error {
		if err := n.unlink(p); err != nil {
			return err
		}
		n.journal.add(record{Path: p})
		return nil
	})
}

// unlink removes the entry p.
func (n *Node) unlink(p string) error {
	dir, name := gopath.Split(strings.TrimRight(p, "/"))
	if name == "" {
		return errors.New("cannot remove the MFS root")
	}
	d, err := lookupDir(n.root, dir)
	if err != nil {
		return mfsError(p, err)
	}
	if _, err := d.Child(name); err != nil {
		return mfsError(p, err)
	}
	return d.Unlink(name)
}

// Flush implements ipfs.Node: it writes the journal's new records. When the journal has
// grown large, it checkpoints instead, so that starting again never has much to apply.
func (n *Node) Flush(ctx context.Context) error {
	_, err := withContext(ctx, func() (struct{}, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.journal.len+int64(n.journal.buf.Len()) > journalLimit {
			return struct{}{}, n.checkpoint(ctx)
		}
		return struct{}{}, n.journal.write()
	})
	if err != nil {
		return err
	}
	// The journal, and the blocks its records name, on disk before the answer: outside
	// n.mu, so that other requests go on while the disk writes.
	return n.disk.Sync(ctx)
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
	}
}

// checkpointNow checkpoints, taking n.mu.
func (n *Node) checkpointNow(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.checkpoint(ctx)
}

// checkpoint flushes MFS, records its root in the repository and empties the journal.
// The caller holds n.mu exclusively.
//
// The flush writes the changed directories and records the new root, as MFS's own
// publishing does, but keeps MFS's directories in memory: dropping them, as
// mfs.FlushPath does, would have the next requests read them back from disk. Every
// trimEvery checkpoints, mfs.FlushPath does drop them, so that memory stays bounded.
func (n *Node) checkpoint(ctx context.Context) error {
	if n.changes == n.checkpointed {
		return nil
	}
	if err := n.flush(ctx); err != nil {
		return fmt.Errorf("flush mfs: %w", err)
	}
	// The root on disk before the journal that leads to it is emptied.
	if err := n.disk.Sync(ctx); err != nil {
		return err
	}
	n.checkpointed = n.changes
	return n.journal.reset()
}

// trimEvery is how many checkpoints keep MFS's directories in memory before one drops
// them.
const trimEvery = 16

func (n *Node) flush(ctx context.Context) error {
	if err := n.checkRoom(); err != nil {
		return err
	}
	if n.flushes++; n.flushes%trimEvery == 0 {
		_, err := mfs.FlushPath(ctx, n.root, "/")
		return err
	}
	nd, err := n.root.GetDirectory().GetNode()
	if err != nil {
		return err
	}
	ds := n.ipfs.Repo.Datastore()
	if err := ds.Sync(ctx, blockstore.BlockPrefix); err != nil {
		return err
	}
	if err := ds.Put(ctx, node.FilesRootDatastoreKey, nd.Cid().Bytes()); err != nil {
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
		err := n.unlink(rec.Path)
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
	if have, err := n.ipfs.Blockstore.Has(ctx, c); err != nil || !have {
		return errors.Join(fmt.Errorf("%s: %w", c, ipfs.ErrNotFound), err)
	}
	nd, err := n.ipfs.DAG.Get(ctx, c)
	if err != nil {
		return err
	}
	return n.link(rec.Path, nd)
}

func (n *Node) mkdirAll(dir string) (*mfs.Directory, error) {
	if err := mfs.Mkdir(n.root, dir, mfs.MkdirOpts{Mkparents: true}); err != nil {
		return nil, fmt.Errorf("mkdir %s: %w", dir, err)
	}
	d, err := lookupDir(n.root, dir)
	if err != nil {
		return nil, mfsError(dir, err)
	}
	return d, nil
}

func lookupDir(root *mfs.Root, p string) (*mfs.Directory, error) {
	fsn, err := mfs.Lookup(root, p)
	if err != nil {
		return nil, err
	}
	d, ok := fsn.(*mfs.Directory)
	if !ok {
		return nil, fmt.Errorf("%s: %w", p, ipfs.ErrNotDir)
	}
	return d, nil
}

// replace puts nd at name in d, in place of what was there.
func replace(d *mfs.Directory, name string, nd ipld.Node) error {
	if _, err := d.Child(name); err == nil {
		if err := d.Unlink(name); err != nil {
			return err
		}
	}
	return d.AddChild(name, nd)
}
