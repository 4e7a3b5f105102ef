package kubo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Add implements ipfs.Node with the daemon's importer, every parameter given, so that
// the daemon's Import config changes nothing (but what New checks). Content never goes
// through files write, which builds trickle DAGs.
func (n *Node) Add(ctx context.Context, f files.Node) (cid.Cid, error) {
	rb := n.api.Request("add").
		Option("cid-version", ipfs.Import.CIDVersion).
		Option("hash", ipfs.Import.HashFunction).
		Option("raw-leaves", ipfs.Import.RawLeaves).
		Option("chunker", "size-"+strconv.Itoa(ipfs.Import.ChunkSize)).
		Option("max-file-links", ipfs.Import.MaxFileLinks).
		Option("trickle", ipfs.Import.Layout == "trickle").
		Option("max-directory-links", 0). // no limit: directories shard by size instead
		Option("max-hamt-fanout", ipfs.Import.HAMTFanout).
		Option("empty-dirs", true).
		Option("inline", false).
		Option("pin", false).
		Option("progress", false).
		// The daemon provides what it adds as its Provide config says; announcing every
		// chunk's root at once as well is load for nothing.
		Option("fast-provide-root", false).
		// The part named "" is the node itself, not a directory around it.
		Body(files.NewMultiFileReader(files.NewMapDirectory(map[string]files.Node{"": f}), false, false))
	var root string
	err := n.stream(ctx, rb, "add", false, func(line []byte) error {
		var ev struct{ Hash string }
		if err := json.Unmarshal(line, &ev); err != nil {
			return err
		}
		if ev.Hash != "" {
			root = ev.Hash // the root comes last
		}
		return nil
	})
	if err != nil {
		return cid.Undef, err
	}
	c, err := cid.Decode(root)
	if err != nil {
		return cid.Undef, fmt.Errorf("kubo add: root %q: %w", root, err)
	}
	return c, nil
}

// Join implements ipfs.Node: it builds the DAG as the embedded node does, and writes
// its nodes with block put.
func (n *Node) Join(ctx context.Context, parts []ipfs.Part) (cid.Cid, error) {
	c, err := ipfs.JoinDAG(ctx, parts, n.putBlock)
	if err != nil {
		return cid.Undef, fmt.Errorf("ipfs join: %w", err)
	}
	return c, nil
}

// putBlock writes nd, a dag-pb node, to the daemon's blockstore.
func (n *Node) putBlock(ctx context.Context, nd ipld.Node) error {
	rb := n.api.Request("block/put").
		Option("cid-codec", "dag-pb").
		Option("mhtype", ipfs.Import.HashFunction).
		Option("pin", false).
		Body(files.NewMultiFileReader(files.NewMapDirectory(map[string]files.Node{"": files.NewBytesFile(nd.RawData())}), false, false))
	var out struct{ Key string }
	if err := n.decode(ctx, rb, "block put", true, &out); err != nil {
		return err
	}
	if out.Key != nd.Cid().String() {
		return fmt.Errorf("kubo block put: the daemon made %s of block %s", out.Key, nd.Cid())
	}
	return nil
}

// Fetch implements ipfs.Node: refs -r walks the whole DAG, fetching every block the
// daemon does not have.
func (n *Node) Fetch(ctx context.Context, c cid.Cid) error {
	rb := n.api.Request("refs", c.String()).Option("recursive", true).Option("unique", true)
	err := n.stream(ctx, rb, "refs", false, func(line []byte) error {
		var ref struct{ Err string }
		if err := json.Unmarshal(line, &ref); err != nil {
			return err
		}
		if ref.Err != "" {
			return daemonError(ref.Err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fetch %s: %w", c, err)
	}
	return nil
}

// readIPFS reads the file at an IPFS path.
func (n *Node) readIPFS(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	// cat gives nothing for an offset past the end, as Read promises.
	return n.send(ctx, n.api.Request("cat", p).Option("offset", offset).Option("progress", false), "cat", false)
}

// readMFS reads the MFS file at p, through the gateway past its first gatewayFrom bytes
// if the node has one (see gateway.go).
func (n *Node) readMFS(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if n.gateway != "" {
		return n.readLarge(ctx, p, offset)
	}
	n.mu.RLock()
	defer n.mu.RUnlock() // once the daemon has the file open
	r, err := n.send(ctx, n.api.Request("files/read", p).Option("offset", offset), "files read", true)
	if errors.Is(err, errPastEnd) {
		return http.NoBody, nil
	}
	return r, err
}

// maxBlock bounds the blocks Links reads: the largest block bitswap moves.
const maxBlock = 2 << 20

// Links implements ipfs.Node: block get, offline so that a block not local is not
// fetched, decoded here.
func (n *Node) Links(ctx context.Context, c cid.Cid) ([]ipfs.Link, error) {
	if c.Type() == cid.Raw {
		// Offline: a block not local is not found.
		if err := n.call(ctx, n.api.Request("block/stat", c.String()).Option("offline", true), "block stat", true); err != nil {
			return nil, fmt.Errorf("links of %s: %w", c, err)
		}
		return nil, nil
	}
	r, err := n.send(ctx, n.api.Request("block/get", c.String()).Option("offline", true), "block get", true)
	if err != nil {
		return nil, fmt.Errorf("links of %s: %w", c, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxBlock+1))
	if err != nil {
		return nil, fmt.Errorf("links of %s: %w", c, err)
	}
	if len(b) > maxBlock {
		return nil, fmt.Errorf("links of %s: a block larger than %d bytes", c, maxBlock)
	}
	nd, err := merkledag.DecodeProtobuf(b)
	if err != nil {
		return nil, fmt.Errorf("links of %s: %w", c, err)
	}
	out := make([]ipfs.Link, len(nd.Links()))
	for i, l := range nd.Links() {
		out[i] = ipfs.Link{Name: l.Name, CID: l.Cid, Size: l.Size}
	}
	return out, nil
}
