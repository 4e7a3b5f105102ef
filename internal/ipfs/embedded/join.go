package embedded

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Join implements ipfs.Node.
func (n *Node) Join(ctx context.Context, parts []ipfs.Part) (cid.Cid, error) {
	c, err := n.join(ctx, parts, ipfs.Import.MaxFileLinks)
	if err != nil {
		return cid.Undef, fmt.Errorf("ipfs join: %w", err)
	}
	return c, nil
}

// subtree is a node of a file's DAG, as its parent links it.
type subtree struct {
	cid      cid.Cid
	dagSize  uint64 // the size of the blocks below and including it
	fileSize uint64 // the bytes of the file it holds
}

// join builds the balanced DAG of UnixFS's importer over raw leaves: the leaves in groups
// of maxLinks under a node each, those nodes in groups of maxLinks under a node each, and
// so on until one node holds all. A single leaf is the file itself.
func (n *Node) join(ctx context.Context, parts []ipfs.Part, maxLinks int) (cid.Cid, error) {
	if len(parts) == 0 {
		return cid.Undef, errors.New("no parts")
	}
	level := make([]subtree, len(parts))
	for i, p := range parts {
		level[i] = subtree{cid: p.CID, dagSize: uint64(p.Size), fileSize: uint64(p.Size)}
	}
	for len(level) > 1 {
		var up []subtree
		for start := 0; start < len(level); start += maxLinks {
			t, err := n.fileNode(ctx, level[start:min(start+maxLinks, len(level))])
			if err != nil {
				return cid.Undef, err
			}
			up = append(up, t)
		}
		level = up
	}
	return level[0].cid, nil
}

// fileNode adds the UnixFS file node over children.
func (n *Node) fileNode(ctx context.Context, children []subtree) (subtree, error) {
	fsn := ft.NewFSNode(ft.TFile)
	nd := new(merkledag.ProtoNode)
	if err := nd.SetCidBuilder(cidV1); err != nil {
		return subtree{}, err
	}
	for _, c := range children {
		if err := nd.AddRawLink("", &ipld.Link{Cid: c.cid, Size: c.dagSize}); err != nil {
			return subtree{}, err
		}
		fsn.AddBlockSize(c.fileSize)
	}
	data, err := fsn.GetBytes()
	if err != nil {
		return subtree{}, err
	}
	nd.SetData(data)
	if err := n.ipfs.DAG.Add(ctx, nd); err != nil {
		return subtree{}, err
	}
	size, err := nd.Size()
	if err != nil {
		return subtree{}, err
	}
	return subtree{cid: nd.Cid(), dagSize: size, fileSize: fsn.FileSize()}, nil
}
