package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	gopath "path"
	"strings"

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

// change runs f as an MFS change: exclusively, and counted for Flush.
func (n *Node) change(ctx context.Context, f func() error) error {
	_, err := withContext(ctx, func() (struct{}, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.changes++
		return struct{}{}, f()
	})
	return err
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
	dir, name := gopath.Split(p)
	return n.change(ctx, func() error {
		d, err := n.mkdirAll(dir)
		if err != nil {
			return err
		}
		return replace(d, name, nd)
	})
}

// Move implements ipfs.Node.
func (n *Node) Move(ctx context.Context, src, dst string) error {
	srcDir, srcName := gopath.Split(src)
	dstDir, dstName := gopath.Split(dst)
	return n.change(ctx, func() error {
		from, err := lookupDir(n.root, srcDir)
		if err != nil {
			return mfsError(src, err)
		}
		child, err := from.Child(srcName)
		if err != nil {
			return mfsError(src, err)
		}
		nd, err := child.GetNode()
		if err != nil {
			return err
		}
		to, err := n.mkdirAll(dstDir)
		if err != nil {
			return err
		}
		if err := replace(to, dstName, nd); err != nil {
			return err
		}
		if from == to && srcName == dstName {
			return nil
		}
		return from.Unlink(srcName)
	})
}

// Remove implements ipfs.Node.
func (n *Node) Remove(ctx context.Context, p string) error {
	dir, name := gopath.Split(strings.TrimRight(p, "/"))
	if name == "" {
		return errors.New("cannot remove the MFS root")
	}
	return n.change(ctx, func() error {
		d, err := lookupDir(n.root, dir)
		if err != nil {
			return mfsError(p, err)
		}
		if _, err := d.Child(name); err != nil {
			return mfsError(p, err)
		}
		return d.Unlink(name)
	})
}

// Flush implements ipfs.Node. Flushes that find nothing changed since the last one return
// at once, so many callers flushing together cost one flush.
//
// A flush writes the changed directories and records the new root in the repository, as
// MFS's own publishing does, but keeps MFS's directories in memory: dropping them, as
// mfs.FlushPath does, would have the next requests read them back from disk. Every
// trimEvery flushes, mfs.FlushPath does drop them, so that memory stays bounded.
func (n *Node) Flush(ctx context.Context) error {
	_, err := withContext(ctx, func() (struct{}, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.changes == n.flushed {
			return struct{}{}, nil
		}
		if err := n.flush(ctx); err != nil {
			return struct{}{}, fmt.Errorf("flush mfs: %w", err)
		}
		n.flushed = n.changes
		return struct{}{}, nil
	})
	return err
}

// trimEvery is how many flushes keep MFS's directories in memory before one drops them.
const trimEvery = 64

func (n *Node) flush(ctx context.Context) error {
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
