package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/boxo/path"
	"github.com/ipfs/boxo/path/resolver"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/ipfs/kubo/core/coreiface/options"
	"github.com/ipld/go-ipld-prime/datamodel"
	mh "github.com/multiformats/go-multihash"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Stat implements ipfs.Node.
func (n *Node) Stat(ctx context.Context, p string) (ipfs.Entry, error) {
	if !ipfs.IsIPFSPath(p) {
		return n.statMFS(ctx, p)
	}
	segments := path.StringToSegments(p)
	if e, ok := n.statLocalLeaf(ctx, segments); ok {
		return e, nil
	}
	nd, err := n.resolve(ctx, p)
	if err != nil {
		return ipfs.Entry{}, err
	}
	return nodeEntry(segments, nd)
}

// statLocalLeaf describes the raw block of /ipfs/<cid> from its size in the blockstore,
// if it is local, without reading it: linking a fetched blob stats each of its leaves.
func (n *Node) statLocalLeaf(ctx context.Context, segments []string) (ipfs.Entry, bool) {
	if len(segments) != 2 {
		return ipfs.Entry{}, false
	}
	c, err := cid.Decode(segments[1])
	if err != nil || c.Type() != cid.Raw {
		return ipfs.Entry{}, false
	}
	size, err := n.ipfs.Blockstore.GetSize(ctx, c)
	if err != nil {
		return ipfs.Entry{}, false // not local, or unreadable: resolving says which
	}
	return ipfs.Entry{CID: c, Name: segments[1], Size: int64(size)}, true
}

// List implements ipfs.Node.
func (n *Node) List(ctx context.Context, p string) ([]ipfs.Entry, error) {
	if !ipfs.IsIPFSPath(p) {
		return n.listMFS(ctx, p)
	}
	nd, err := n.resolve(ctx, p)
	if err != nil {
		return nil, err
	}
	unixfsGlobals.RLock()
	defer unixfsGlobals.RUnlock()
	dir, err := uio.NewDirectoryFromNode(n.ipfs.DAG, nd)
	if err != nil {
		if errors.Is(err, uio.ErrNotADir) {
			return nil, fmt.Errorf("%s: %w", p, ipfs.ErrNotDir)
		}
		return nil, err
	}
	var out []ipfs.Entry
	err = dir.ForEachLink(ctx, func(l *ipld.Link) error {
		child, err := n.ipfs.DAG.Get(ctx, l.Cid)
		if err != nil {
			return contentError(err)
		}
		e, err := nodeEntry([]string{l.Name}, child)
		out = append(out, e)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	ipfs.SortEntries(out)
	return out, nil
}

// Read implements ipfs.Node. Reading an IPFS path fetches the leaves it lacks in the
// background, as Fetch does, and reads them in order as they arrive.
func (n *Node) Read(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	var nd ipld.Node
	var err error
	// What MFS links is local: it was added here, or fetched whole before it was linked.
	// Reading it locally only makes a block gone missing an error rather than a wait on
	// the network.
	var dag ipld.NodeGetter = n.local
	stop := func() {}
	if ipfs.IsIPFSPath(p) {
		nd, err = n.resolve(ctx, p)
		if err == nil {
			if stop, err = n.prefetch(ctx, nd, uint64(max(offset, 0))); err != nil {
				err = fmt.Errorf("read %s: %w", p, contentError(err))
			}
		}
		dag = waiting{NodeGetter: n.ipfs.DAG, f: &n.fetching}
	} else {
		nd, err = n.fileNode(ctx, p)
	}
	if err != nil {
		return nil, err
	}
	r, err := uio.NewDagReader(ctx, nd, dag)
	if err != nil {
		stop()
		if errors.Is(err, uio.ErrIsDir) {
			return nil, fmt.Errorf("%s: %w", p, ipfs.ErrIsDir)
		}
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if offset > int64(r.Size()) {
		offset = int64(r.Size())
	}
	if _, err := r.Seek(offset, io.SeekStart); err != nil {
		stop()
		r.Close()
		return nil, fmt.Errorf("read %s at %d: %w", p, offset, err)
	}
	return prefetchReader{DagReader: r, stop: stop}, nil
}

// prefetchReader stops its prefetch when closed.
type prefetchReader struct {
	uio.DagReader
	stop func()
}

func (r prefetchReader) Close() error {
	r.stop()
	return r.DagReader.Close()
}

// fileNode returns the root node of the MFS file at p.
func (n *Node) fileNode(ctx context.Context, p string) (ipld.Node, error) {
	c, err := lookup(ctx, n, func() (cid.Cid, error) { return n.tree.fileAt(ctx, p) })
	if err != nil {
		return nil, err
	}
	if nd, ok := n.added.Get(c); ok {
		return nd, nil
	}
	nd, err := n.local.Get(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, contentError(err))
	}
	return nd, nil
}

// Add implements ipfs.Node.
func (n *Node) Add(ctx context.Context, f files.Node) (cid.Cid, error) {
	switch f := f.(type) {
	case files.Directory:
		unixfsGlobals.RLock()
		nd, err := n.addDir(ctx, f)
		unixfsGlobals.RUnlock()
		if err != nil {
			return cid.Undef, fmt.Errorf("ipfs add: %w", err)
		}
		n.added.Add(nd.Cid(), nd)
		return nd.Cid(), nil
	case files.File:
		if size, err := f.Size(); err == nil && size <= int64(ipfs.Import.ChunkSize) {
			return n.addLeaf(ctx, f, size)
		}
	}
	p, err := n.api.Unixfs().Add(ctx, f,
		options.Unixfs.CidVersion(ipfs.Import.CIDVersion),
		options.Unixfs.Hash(mh.SHA2_256),
		options.Unixfs.RawLeaves(ipfs.Import.RawLeaves),
		options.Unixfs.Chunker(fmt.Sprintf("size-%d", ipfs.Import.ChunkSize)),
		options.Unixfs.MaxFileLinks(ipfs.Import.MaxFileLinks),
		options.Unixfs.Layout(options.BalancedLayout),
		options.Unixfs.Inline(false),
		options.Unixfs.Pin(false, ""),
		options.Unixfs.Silent(true),
	)
	if err != nil {
		return cid.Undef, fmt.Errorf("ipfs add: %w", err)
	}
	return p.RootCid(), nil
}

// addLeaf adds a file of one chunk at most. With raw leaves, such a file is one raw
// block, which is what Kubo's importer makes of it too, without the importer's set-up.
func (n *Node) addLeaf(ctx context.Context, f files.File, size int64) (cid.Cid, error) {
	// Read one byte more than the size, in one buffer, to see whether it grew.
	b := make([]byte, size+1)
	k, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return cid.Undef, fmt.Errorf("ipfs add: %w", err)
	}
	b = b[:k]
	if int64(k) > size { // it grew: let the importer chunk it
		return n.Add(ctx, files.NewReaderFile(io.MultiReader(bytes.NewReader(b), f)))
	}
	nd, err := merkledag.NewRawNodeWPrefix(b, cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1})
	if err != nil {
		return cid.Undef, err
	}
	if err := n.ipfs.DAG.Add(ctx, nd); err != nil {
		return cid.Undef, fmt.Errorf("ipfs add: %w", err)
	}
	if len(b) <= maxCached {
		n.added.Add(nd.Cid(), nd)
	}
	return nd.Cid(), nil
}

// maxCached is the size of the largest file kept in n.added: links, manifests and
// configs, not the chunks of layers.
const maxCached = 64 << 10

// Links implements ipfs.Node.
func (n *Node) Links(ctx context.Context, c cid.Cid) ([]ipfs.Link, error) {
	nd, err := n.local.Get(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("links of %s: %w", c, contentError(err))
	}
	out := make([]ipfs.Link, len(nd.Links()))
	for i, l := range nd.Links() {
		out[i] = ipfs.Link{Name: l.Name, CID: l.Cid, Size: l.Size}
	}
	return out, nil
}

// resolve returns the node at an IPFS path, fetching what it needs from the network.
func (n *Node) resolve(ctx context.Context, p string) (ipld.Node, error) {
	ip, err := path.NewPath(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	n.redial() // what the path leads to may be on a peer only
	nd, err := n.api.ResolveNode(ctx, ip)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, contentError(err))
	}
	return nd, nil
}

// nodeEntry describes a UnixFS node; segments end with its name.
func nodeEntry(segments []string, nd ipld.Node) (ipfs.Entry, error) {
	e := ipfs.Entry{CID: nd.Cid()}
	if len(segments) > 0 {
		e.Name = segments[len(segments)-1]
	}
	switch nd := nd.(type) {
	case *merkledag.RawNode:
		e.Size = int64(len(nd.RawData()))
	case *merkledag.ProtoNode:
		fsn, err := ft.FSNodeFromBytes(nd.Data())
		if err != nil {
			return e, fmt.Errorf("%s: not UnixFS: %w", nd.Cid(), err)
		}
		switch fsn.Type() {
		case ft.TDirectory, ft.THAMTShard:
			e.IsDir = true
		default:
			e.Size = int64(fsn.FileSize())
		}
	default:
		return e, fmt.Errorf("%s: not UnixFS", nd.Cid())
	}
	return e, nil
}

// contentError maps not-found errors from IPFS lookups to ipfs.ErrNotFound.
func contentError(err error) error {
	var nf ipld.ErrNotFound
	if errors.As(err, &nf) || errors.Is(err, ipld.ErrNotFound{}) || isNoLink(err) {
		return fmt.Errorf("%w: %w", ipfs.ErrNotFound, err)
	}
	return err
}

// isNoLink reports an error about a path that goes through something that is not there,
// or through a file.
func isNoLink(err error) bool {
	var wrongKind datamodel.ErrWrongKind
	return errors.Is(err, &resolver.ErrNoLink{}) || errors.Is(err, merkledag.ErrLinkNotFound) ||
		errors.Is(err, os.ErrNotExist) || errors.As(err, &wrongKind)
}
