package global

import (
	"context"
	"errors"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/discoregistry/disco/internal/ipfs"
)

// canonical returns the CID of the file c, of size bytes and local on node, under Disco's import
// parameters, adding what that needs. Content from the network may come under any CID:
// the original Disco's blobs are CID v0 DAGs of 256 KiB chunks. A blob must be linked
// under its canonical CID all the same, or a later push of the same image would publish
// it under another CID than on any other Disco.
//
// A file of raw 1 MiB leaves is joined again, which adds a few small nodes at most;
// any other is imported again from its local blocks.
func (g *Global) canonical(ctx context.Context, node ipfs.Node, c cid.Cid, size int64) (cid.Cid, error) {
	if size <= int64(ipfs.Import.ChunkSize) && isLeaf(c) {
		return c, nil
	}
	parts, err := leaves(ctx, node, c, size)
	if err == nil {
		return node.Join(ctx, parts)
	}
	if !errors.Is(err, errNotCanonical) {
		return cid.Undef, err
	}
	r, err := node.Read(ctx, "/ipfs/"+c.String(), 0)
	if err != nil {
		return cid.Undef, err
	}
	defer r.Close()
	return node.Add(ctx, files.NewReaderFile(r))
}

var errNotCanonical = errors.New("not Disco's chunks")

// isLeaf reports whether c names a raw block, as Disco's importer makes leaves.
func isLeaf(c cid.Cid) bool {
	p := c.Prefix()
	return p.Version == 1 && p.Codec == cid.Raw && p.MhType == mh.SHA2_256
}

// leaves returns the leaves of the file c, of size bytes, if they are the chunks Disco's
// importer would cut: raw blocks of ipfs.Import.ChunkSize bytes, the last one shorter.
func leaves(ctx context.Context, node ipfs.Node, c cid.Cid, size int64) ([]ipfs.Part, error) {
	var parts []ipfs.Part
	maxParts := size/int64(ipfs.Import.ChunkSize) + 1
	var walk func(c cid.Cid, depth int) error
	walk = func(c cid.Cid, depth int) error {
		if isLeaf(c) {
			e, err := node.Stat(ctx, "/ipfs/"+c.String()) // the block's true size
			if err != nil {
				return err
			}
			parts = append(parts, ipfs.Part{CID: c, Size: e.Size})
			return nil
		}
		if depth > 8 || c.Type() != cid.DagProtobuf {
			return errNotCanonical
		}
		links, err := node.Links(ctx, c)
		if err != nil {
			return err
		}
		if len(links) == 0 { // data in a dag-pb leaf
			return errNotCanonical
		}
		for _, l := range links {
			if int64(len(parts)) >= maxParts {
				return errNotCanonical // more parts than Disco cuts that many bytes into
			}
			if err := walk(l.CID, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(c, 0); err != nil {
		return nil, err
	}
	var total int64
	for i, p := range parts {
		last := i == len(parts)-1
		if (!last && p.Size != int64(ipfs.Import.ChunkSize)) || (last && (p.Size == 0 && len(parts) > 1 || p.Size > int64(ipfs.Import.ChunkSize))) {
			return nil, errNotCanonical
		}
		total += p.Size
	}
	if total != size {
		return nil, errNotCanonical
	}
	return parts, nil
}
