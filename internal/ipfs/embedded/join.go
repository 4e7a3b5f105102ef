package embedded

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Join implements ipfs.Node.
func (n *Node) Join(ctx context.Context, parts []ipfs.Part) (cid.Cid, error) {
	c, err := ipfs.JoinDAG(ctx, parts, n.ipfs.DAG.Add)
	if err != nil {
		return cid.Undef, fmt.Errorf("ipfs join: %w", err)
	}
	return c, nil
}
