package kubo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	gopath "path"

	unixfs_pb "github.com/ipfs/boxo/ipld/unixfs/pb"
	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Changes of the tree are persisted together, by Flush (see batch.go); holds, and the
// removal of a batch, are persisted as they are made.

// Stat implements ipfs.Node. files stat takes IPFS paths too.
func (n *Node) Stat(ctx context.Context, p string) (ipfs.Entry, error) {
	if !ipfs.IsIPFSPath(p) {
		n.mu.RLock()
		defer n.mu.RUnlock()
	}
	return n.stat(ctx, p)
}

func (n *Node) stat(ctx context.Context, p string) (ipfs.Entry, error) {
	if err := checkPath(p); err != nil {
		return ipfs.Entry{}, err
	}
	var out struct {
		Hash string
		Size int64
		Type string
	}
	if err := n.decode(ctx, n.api.Request("files/stat", p), "files stat", !ipfs.IsIPFSPath(p), &out); err != nil {
		return ipfs.Entry{}, fmt.Errorf("%s: %w", p, err)
	}
	c, err := cid.Decode(out.Hash)
	if err != nil {
		return ipfs.Entry{}, fmt.Errorf("kubo files stat %s: %w", p, err)
	}
	e := ipfs.Entry{Name: gopath.Base(p), CID: c, IsDir: out.Type == "directory"}
	if !e.IsDir {
		e.Size = out.Size
	}
	return e, nil
}

// List implements ipfs.Node. It lists the directory's CID, which files stat gives for MFS
// and IPFS paths alike: files ls cannot tell a file from a directory holding a file of
// the same name, and takes no IPFS paths.
func (n *Node) List(ctx context.Context, p string) ([]ipfs.Entry, error) {
	if !ipfs.IsIPFSPath(p) {
		n.mu.RLock()
		defer n.mu.RUnlock()
	}
	return n.list(ctx, p)
}

func (n *Node) list(ctx context.Context, p string) ([]ipfs.Entry, error) {
	d, err := n.stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if !d.IsDir {
		return nil, fmt.Errorf("%s: %w", p, ipfs.ErrNotDir)
	}
	var out struct {
		Objects []struct {
			Links []struct {
				Name, Hash string
				Size       int64
				Type       unixfs_pb.Data_DataType
			}
		}
	}
	rb := n.api.Request("ls", "/ipfs/"+d.CID.String()).Option("resolve-type", true).Option("size", true).Option("stream", false)
	if err := n.decode(ctx, rb, "ls", !ipfs.IsIPFSPath(p), &out); err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	es := []ipfs.Entry{}
	for _, o := range out.Objects {
		for _, l := range o.Links {
			c, err := cid.Decode(l.Hash)
			if err != nil {
				return nil, fmt.Errorf("list %s: %s: %w", p, l.Name, err)
			}
			e := ipfs.Entry{Name: l.Name, CID: c, IsDir: l.Type == unixfs_pb.Data_Directory || l.Type == unixfs_pb.Data_HAMTShard}
			if !e.IsDir {
				e.Size = l.Size
			}
			es = append(es, e)
		}
	}
	ipfs.SortEntries(es)
	return es, nil
}

// Read implements ipfs.Node. Unlike the embedded node, the daemon reads an MFS file with
// a missing block by waiting for the network, until ctx ends.
func (n *Node) Read(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	var r io.ReadCloser
	var err error
	if ipfs.IsIPFSPath(p) {
		r, err = n.readIPFS(ctx, p, offset)
	} else {
		r, err = n.readMFS(ctx, p, offset)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return r, nil
}

// Link implements ipfs.Node. files cp needs c's root node only; the daemon fetches it
// if it does not have it, but as a local call, within the node's timeout: what Disco
// links it has added or fetched already.
func (n *Node) Link(ctx context.Context, p string, c cid.Cid) error {
	if err := checkMFSPath(p); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.link(ctx, p, c)
}

// link places c at p in place of what is there. The caller holds n.mu.
func (n *Node) link(ctx context.Context, p string, c cid.Cid) error {
	return n.put(ctx, "/ipfs/"+c.String(), p)
}

// put places what is at from, an IPFS or MFS path, at p in place of what is there.
// files cp --force replaces a file in the same call; a directory in the way is removed
// first. The caller holds n.mu.
func (n *Node) put(ctx context.Context, from, p string) error {
	err := n.cp(ctx, from, p, true)
	if errors.Is(err, errLimit) {
		// The daemon unlinked what was at p before it refused the change (other clients'
		// changes took it to Internal.MFSNoFlushLimit): put from there with a flushing
		// cp, which the limit does not refuse.
		rb := n.api.Request("files/cp", from, p).Option("parents", true).Option("force", true)
		if err := n.call(ctx, rb, "files cp", true); err != nil {
			return fmt.Errorf("put %s at %s: %w", from, p, err)
		}
		return nil
	}
	if !errors.Is(err, errNotFile) {
		return err
	}
	if err := n.trash(ctx, p); err != nil && !errors.Is(err, ipfs.ErrNotFound) {
		return err
	}
	return n.cp(ctx, from, p, false)
}

// cp places what is at from at p, creating parent directories. Unless force replaces a
// file there, it fails if something is at p already.
func (n *Node) cp(ctx context.Context, from, p string, force bool) error {
	if err := n.change(ctx); err != nil {
		return err
	}
	rb := n.api.Request("files/cp", from, p).Option("parents", true).Option("flush", false).Option("force", force)
	if err := n.call(ctx, rb, "files cp", true); err != nil {
		return fmt.Errorf("put %s at %s: %w", from, p, err)
	}
	return nil
}

// Move implements ipfs.Node as a copy of src at dst, then Remove of src, so that the
// content is at one of them or both at all times; files mv would move src into dst if
// dst were a directory.
func (n *Node) Move(ctx context.Context, src, dst string) error {
	if err := errors.Join(checkMFSPath(src), checkMFSPath(dst)); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if gopath.Clean(src) == gopath.Clean(dst) {
		_, err := n.stat(ctx, src)
		return err
	}
	if err := n.put(ctx, src, dst); err != nil {
		return err
	}
	return n.trash(ctx, src)
}

// Remove implements ipfs.Node.
func (n *Node) Remove(ctx context.Context, p string) error {
	if err := checkMFSPath(p); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.trash(ctx, p)
}

// rm removes p and what is below it. files rm reports what it could not remove in the body
// of its answer, as JSON strings, then fails with "can't remove some files".
func (n *Node) rm(ctx context.Context, p string) error {
	var errs []error
	rb := n.api.Request("files/rm", p).Option("recursive", true)
	err := n.stream(ctx, rb, "files rm", true, func(line []byte) error {
		var msg string
		if err := json.Unmarshal(line, &msg); err != nil {
			return err
		}
		errs = append(errs, daemonError(msg))
		return nil
	})
	if len(errs) > 0 {
		err = errors.Join(errs...)
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// Flush implements ipfs.Node: it persists the changes made since the last Flush (see
// batch.go).
func (n *Node) Flush(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	err := n.flush(ctx)
	if err == nil {
		err, n.lost = n.lost, nil
	}
	return err
}

// checkPath checks that p is an absolute MFS or IPFS path.
func checkPath(p string) error {
	if !gopath.IsAbs(p) {
		return fmt.Errorf("%q: not an absolute path", p)
	}
	return nil
}

// checkMFSPath checks that p is an absolute MFS path below the root.
func checkMFSPath(p string) error {
	if err := checkPath(p); err != nil {
		return err
	}
	if ipfs.IsIPFSPath(p) || gopath.Clean(p) == "/" {
		return fmt.Errorf("%q: not an MFS path below the root", p)
	}
	return nil
}
