package kubo

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	gopath "path"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Hold implements ipfs.Holder: a hold is an MFS directory right below the node's hold
// root, named by the hold's path escaped into one path element, and the DAGs it holds
// are its entries, linked with files cp as Link links them. The daemon's garbage
// collection keeps what its MFS root reaches; files cp flushes the root before it
// answers, so a hold outlives a restart of the daemon. A hold's directory is shallow
// because every files cp writes each directory above what it links: a hold at the
// upload's own deep path costs three times the writes.
//
// files cp is called offline so that content that is not there (because a collection
// ran between its Add and its Hold) fails the hold at once instead of being sought on
// the network. Once held, the DAG is checked for blocks a collection took before the
// hold: files stat --with-local walks it, offline.
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
		err = nil // held already, unless a file is in the way of the hold's directory
	}
	if err == nil {
		err = n.checkLocal(ctx, entry)
	}
	if err != nil {
		return fmt.Errorf("hold %s under %s: %w", c, hold, err)
	}
	return nil
}

// checkLocal fails with an error matching ipfs.ErrNotFound unless the daemon has every
// block of the DAG at the MFS path p.
func (n *Node) checkLocal(ctx context.Context, p string) error {
	var out struct {
		Local     bool
		SizeLocal uint64
	}
	rb := n.api.Request("files/stat", p).Option("with-local", true)
	if err := n.decode(ctx, rb, "files stat", true, &out); err != nil {
		return err
	}
	if !out.Local {
		return fmt.Errorf("%w: the daemon has %d bytes of it, not all its blocks (collected before the hold?)", ipfs.ErrNotFound, out.SizeLocal)
	}
	return nil
}

// Release implements ipfs.Holder: it removes the hold directories of hold and of the
// holds below it.
func (n *Node) Release(ctx context.Context, hold string) error {
	if _, err := n.holdDir(hold); err != nil {
		return err
	}
	hold = gopath.Clean(hold)
	below := strings.TrimSuffix(hold, "/") + "/"
	n.mu.Lock()
	defer n.mu.Unlock()
	held, err := n.holds(ctx)
	if errors.Is(err, ipfs.ErrNotFound) {
		return nil // nothing held yet
	}
	if err != nil {
		return fmt.Errorf("release %s: %w", hold, err)
	}
	for _, e := range held {
		name, err := url.PathUnescape(e.Name)
		if err != nil || name != hold && !strings.HasPrefix(name, below) {
			continue
		}
		// In the batch, so that a link made before it, of what the hold kept, is persisted
		// with it or not at all.
		if err := n.trash(ctx, n.holdRoot+"/"+e.Name); err != nil && !errors.Is(err, ipfs.ErrNotFound) {
			return fmt.Errorf("release %s: %w", hold, err)
		}
	}
	return nil
}

// holds lists the hold root: files ls, one call, as the hold root is a directory of the
// node's own (List takes two, to tell a file from a directory).
func (n *Node) holds(ctx context.Context) ([]struct{ Name string }, error) {
	var out struct{ Entries []struct{ Name string } }
	if err := n.decode(ctx, n.api.Request("files/ls", n.holdRoot), "files ls", true, &out); err != nil {
		return nil, err
	}
	return out.Entries, nil
}

// holdDir returns the MFS directory of hold.
func (n *Node) holdDir(hold string) (string, error) {
	if !gopath.IsAbs(hold) {
		return "", fmt.Errorf("hold %q: not an absolute path", hold)
	}
	// Escaped, hold is one path element ("/" becomes "%2F"), never "." or "..".
	return n.holdRoot + "/" + url.PathEscape(gopath.Clean(hold)), nil
}
