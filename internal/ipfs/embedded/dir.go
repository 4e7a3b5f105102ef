package embedded

import (
	"context"
	"fmt"

	"github.com/ipfs/boxo/files"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/discoregistry/disco/internal/ipfs"
)

// addDir adds a directory tree and returns its root node. It makes the same DAG as
// Kubo's importer, which builds a whole MFS for every call: a UnixFS directory per level,
// CID v1, files imported as Add imports them.
func (n *Node) addDir(ctx context.Context, d files.Directory) (ipld.Node, error) {
	dir, err := uio.NewDirectory(n.ipfs.DAG, uio.WithCidBuilder(ipfs.DagPBPrefix), uio.WithMaxHAMTFanout(uio.DefaultShardWidth))
	if err != nil {
		return nil, err
	}
	it := d.Entries()
	for it.Next() {
		child, err := n.addNode(ctx, it.Node())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", it.Name(), err)
		}
		if err := dir.AddChild(ctx, it.Name(), child); err != nil {
			return nil, err
		}
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	nd, err := dir.GetNode()
	if err != nil {
		return nil, err
	}
	if err := n.ipfs.DAG.Add(ctx, nd); err != nil {
		return nil, err
	}
	return nd, nil
}

// addNode adds a file or a directory tree and returns its root node.
func (n *Node) addNode(ctx context.Context, f files.Node) (ipld.Node, error) {
	if d, ok := f.(files.Directory); ok {
		return n.addDir(ctx, d)
	}
	c, err := n.Add(ctx, f)
	if err != nil {
		return nil, err
	}
	if nd, ok := n.added.Get(c); ok {
		return nd, nil
	}
	return n.ipfs.DAG.Get(ctx, c)
}
