package ipfs

import (
	"context"

	"github.com/ipfs/go-cid"
)

// Holder is implemented by a Node whose garbage is collected on a schedule Disco does not
// control: a Kubo daemon's, with `ipfs repo gc` or `ipfs daemon --enable-gc`. Such a
// collection removes whatever MFS and pins do not reach, so it can remove what Disco
// added but has not linked yet: the chunks of an upload between two of its requests, or
// a joined file before its Link. Found by type assertion; the helpers below do that.
//
// A holder keeps what it holds from collection, across restarts of Disco and of the
// node, until the hold is released. Holds are named by absolute paths, and releasing one
// releases the holds below it too, so that deleting a directory of uploads can release
// every hold of the uploads in it. An upload is held under its own path (its MFS path,
// unique on the node however many Discos share it). A hold costs the node writes, so the
// chunks a request brought are held together, before the request is answered: a
// collection in the meantime fails the hold, and the request, rather than the upload
// later.
//
//	c, err := node.Add(ctx, chunk)                  // each chunk, as it arrives
//	err = ipfs.HoldParts(ctx, node, hold, parts)    // those of the request, at its end
//	c, err = node.Join(ctx, parts)
//	err = ipfs.Hold(ctx, node, hold, c)             // the joined file, until Link
//	err = node.Link(ctx, p, c)
//	err = ipfs.Release(ctx, node, hold)             // after Link, or on cancel or delete
//
// The embedded node is no Holder: nothing collects its garbage while it runs, and
// Disco's own collection keeps the chunks of the uploads in progress.
type Holder interface {
	// Hold keeps the DAG c from garbage collection until hold, or a hold above it, is
	// released. c must be local already, every block of it: if one is not, as when a
	// collection removed it after it was added and before it was held, Hold fails with
	// an error that matches ErrNotFound rather than wait for the network.
	Hold(ctx context.Context, hold string, c cid.Cid) error
	// Release ends hold and the holds below it. What they kept goes with the next
	// collection, unless MFS links it. Releasing what holds nothing is no error.
	Release(ctx context.Context, hold string) error
}

// HoldParts holds parts, the chunks of a file being imported, under hold if n is a
// Holder: joined into one DAG (which costs one small block), they take one hold.
func HoldParts(ctx context.Context, n Node, hold string, parts []Part) error {
	h, ok := n.(Holder)
	if !ok || len(parts) == 0 {
		return nil
	}
	c, err := n.Join(ctx, parts)
	if err != nil {
		return err
	}
	return h.Hold(ctx, hold, c)
}

// Hold holds c under hold if n is a Holder.
func Hold(ctx context.Context, n Node, hold string, c cid.Cid) error {
	if h, ok := n.(Holder); ok {
		return h.Hold(ctx, hold, c)
	}
	return nil
}

// Release releases hold if n is a Holder.
func Release(ctx context.Context, n Node, hold string) error {
	if h, ok := n.(Holder); ok {
		return h.Release(ctx, hold)
	}
	return nil
}

// Collector is implemented by nodes Disco can have collect their garbage: remove every
// block that neither MFS nor a hold reaches, nor the DAGs of keep.
type Collector interface {
	CollectGarbage(ctx context.Context, keep []cid.Cid) (GCStats, error)
}

// GCStats is what a garbage collection removed.
type GCStats struct {
	Blocks int    // blocks removed
	Freed  uint64 // bytes of storage freed, as the repository counts them
}
