package kubo

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
)

var _ ipfs.Collector = (*Node)(nil)

// CollectGarbage implements ipfs.Collector with the daemon's own repo gc, which keeps
// what MFS reaches, holds included, and what is pinned. The DAGs of keep are held for
// the while, so that it keeps them too.
func (n *Node) CollectGarbage(ctx context.Context, keep []cid.Cid) (ipfs.GCStats, error) {
	var stats ipfs.GCStats
	// A collection under changes not yet persisted can leave the daemon's MFS hung
	// (kubo#10842).
	if err := n.Flush(ctx); err != nil {
		return stats, err
	}
	const hold = "/disco-gc-keep"
	for _, c := range keep {
		if err := n.Hold(ctx, hold, c); err != nil {
			return stats, err
		}
	}
	defer n.Release(context.WithoutCancel(ctx), hold)
	before, err := n.repoSize(ctx)
	if err != nil {
		return stats, err
	}
	err = n.stream(ctx, n.api.Request("repo/gc"), "repo gc", false, func(line []byte) error {
		var res struct {
			Key   map[string]string
			Error string
		}
		if err := json.Unmarshal(line, &res); err != nil {
			return err
		}
		if res.Error != "" {
			return daemonError(res.Error)
		}
		stats.Blocks++
		return nil
	})
	if err != nil {
		return stats, fmt.Errorf("ipfs gc: %w", err)
	}
	after, err := n.repoSize(ctx)
	if err == nil && after < before {
		stats.Freed = before - after
	}
	return stats, err
}

// repoSize returns the bytes the daemon's repository takes.
func (n *Node) repoSize(ctx context.Context) (uint64, error) {
	var out struct{ RepoSize uint64 }
	err := n.decode(ctx, n.api.Request("repo/stat").Option("size-only", true), "repo stat", true, &out)
	return out.RepoSize, err
}
