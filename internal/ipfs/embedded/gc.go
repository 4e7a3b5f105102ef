package embedded

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/kubo/gc"
	"github.com/ipfs/kubo/repo/fsrepo"

	"github.com/discoregistry/disco/internal/ipfs"
)

// GCStats is what a garbage collection removed.
type GCStats = ipfs.GCStats

var _ ipfs.Collector = (*Node)(nil)

// OpenOffline opens the repository at o.Path with no networking at all, for maintenance.
// It needs the repository to itself: it fails when a node has it open. Opening the
// repository applies the MFS journal, so the tree is the latest.
func OpenOffline(ctx context.Context, o Options) (*Node, error) {
	if !fsrepo.IsInitialized(o.Path) {
		return nil, fmt.Errorf("no ipfs repository at %s", o.Path)
	}
	if locked, err := fsrepo.LockedByOtherProcess(o.Path); err == nil && locked {
		return nil, fmt.Errorf("the ipfs repository %s is in use: stop Disco first", o.Path)
	}
	o.offline = true
	return Open(ctx, o)
}

// CollectGarbage removes every block that neither the MFS tree nor the DAGs of keep
// reach: directory versions that later changes replaced, content that was unlinked,
// blocks of fetches that were refused. Run it on a node from OpenOffline.
func (n *Node) CollectGarbage(ctx context.Context, keep []cid.Cid) (GCStats, error) {
	if err := n.checkpointNow(ctx); err != nil {
		return GCStats{}, err
	}
	return n.collectGarbage(ctx, keep)
}

func (n *Node) collectGarbage(ctx context.Context, keep []cid.Cid) (GCStats, error) {
	var stats GCStats
	// No change may come between reading the root and removing what it does not reach.
	// The tree on disk is this one: CollectGarbage has just checkpointed.
	n.mu.Lock()
	defer n.mu.Unlock()
	root, err := n.tree.rootCID(ctx)
	if err == nil {
		err = n.tree.pending.flush(ctx) // of a checkpoint that has not got there yet
	}
	if err != nil {
		return stats, err
	}
	before, err := n.ipfs.Repo.GetStorageUsage(ctx)
	if err != nil {
		return stats, err
	}
	var errs []error
	for res := range gc.GC(ctx, n.ipfs.Blockstore, n.ipfs.Repo.Datastore(), n.ipfs.Pinning, append([]cid.Cid{root}, keep...)) {
		if res.Error != nil {
			errs = append(errs, res.Error)
		} else if res.KeyRemoved.Defined() {
			stats.Blocks++
		}
	}
	if err := errors.Join(errs...); err != nil {
		return stats, fmt.Errorf("ipfs gc: %w", err)
	}
	after, err := n.ipfs.Repo.GetStorageUsage(ctx)
	if err == nil && after < before {
		stats.Freed = before - after
	}
	return stats, err
}
