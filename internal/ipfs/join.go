package ipfs

import (
	"context"
	"errors"

	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

// DagPBPrefix is the CID prefix of the dag-pb nodes, file and directory nodes, that
// Disco's import parameters make.
var DagPBPrefix = cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}

// PutFunc writes a node of a DAG being built to a node's blockstore.
type PutFunc func(ctx context.Context, nd ipld.Node) error

// JoinDAG builds the DAG Node.Join returns, the one an import of the whole file gives,
// over parts that are there already. It writes each node it makes with put, before the
// nodes that link to it, and returns the root. Every Node implements Join with it: only
// the writing of blocks differs between them.
func JoinDAG(ctx context.Context, parts []Part, put PutFunc) (cid.Cid, error) {
	return joinDAG(ctx, parts, Import.MaxFileLinks, put)
}

// subtree is a node of a file's DAG, as its parent links it.
type subtree struct {
	cid      cid.Cid
	dagSize  uint64 // the size of the blocks below and including it
	fileSize uint64 // the bytes of the file it holds
}

// joinDAG builds the balanced DAG of UnixFS's importer over raw leaves: the leaves in
// groups of maxLinks under a node each, those nodes in groups of maxLinks under a node
// each, and so on until one node holds all. A single leaf is the file itself.
func joinDAG(ctx context.Context, parts []Part, maxLinks int, put PutFunc) (cid.Cid, error) {
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
			t, err := fileNode(ctx, level[start:min(start+maxLinks, len(level))], put)
			if err != nil {
				return cid.Undef, err
			}
			up = append(up, t)
		}
		level = up
	}
	return level[0].cid, nil
}

// fileNode writes the UnixFS file node over children.
func fileNode(ctx context.Context, children []subtree, put PutFunc) (subtree, error) {
	fsn := ft.NewFSNode(ft.TFile)
	nd := new(merkledag.ProtoNode)
	if err := nd.SetCidBuilder(DagPBPrefix); err != nil {
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
	if err := put(ctx, nd); err != nil {
		return subtree{}, err
	}
	size, err := nd.Size()
	if err != nil {
		return subtree{}, err
	}
	return subtree{cid: nd.Cid(), dagSize: size, fileSize: fsn.FileSize()}, nil
}
