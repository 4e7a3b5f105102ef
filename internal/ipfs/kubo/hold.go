package kubo

import (
	"context"
	"errors"
	"fmt"
	gopath "path"

	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Hold implements ipfs.Holder: a hold is an MFS directory below the node's hold root,
// and the DAGs it holds are its entries, linked with files cp as Link links them. The
// daemon's garbage collection keeps what its MFS root reaches; files cp flushes the
// root before it answers, so a hold outlives a restart of the daemon.
//
// files cp is called offline so that content that is not there (because a collection
// ran between its Add and its Hold) fails the hold at once instead of being sought on
// the network: it would be held, and linked, without its blocks.
func (n *Node) Hold(ctx context.Context, hold string, c cid.Cid) error {
	dir, err := n.holdDir(hold)
	if err != nil {
		return err
	}
	entry := dir + "/" + c.String()
	n.mu.Lock()
	defer n.mu.Unlock()
	rb := n.api.Request("files/cp", "/ipfs/"+c.String(), entry).Option("parents", true).Option("offline", true)
	err = n.call(ctx, rb, "files cp", true)
	if errors.Is(err, errExists) {
		// Held already, unless a file is in the way of the hold's directory.
		if _, serr := n.stat(ctx, entry); serr == nil {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("hold %s under %s: %w", c, hold, err)
	}
	return nil
}

// Release implements ipfs.Holder.
func (n *Node) Release(ctx context.Context, hold string) error {
	dir, err := n.holdDir(hold)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.rm(ctx, dir); err != nil && !errors.Is(err, ipfs.ErrNotFound) {
		return fmt.Errorf("release %s: %w", hold, err)
	}
	return nil
}

// holdDir returns the MFS directory of hold.
func (n *Node) holdDir(hold string) (string, error) {
	if !gopath.IsAbs(hold) {
		return "", fmt.Errorf("hold %q: not an absolute path", hold)
	}
	// Cleaning hold as an absolute path keeps it below the hold root whatever it holds.
	return gopath.Join(n.holdRoot, gopath.Clean(hold)), nil
}
