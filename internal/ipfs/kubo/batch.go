package kubo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/discoregistry/disco/internal/ack"
	"github.com/discoregistry/disco/internal/ipfs"
)

// Changes to the tree are made with --flush=false and persisted together by Flush,
// which the server calls before it answers a request that changed something. A files
// cp or files rm that flushes writes, and syncs, every directory from the root down to
// what it changes; a push changes the same few directories some 40 times. files rm
// always flushes, so a removal is a files mv into the batch's pending directory, which
// Flush removes with the rest.
//
// A daemon killed and restarted in the middle of a batch has lost its changes. The node
// tells by a connection of its own to the daemon (epoch), probed when the batch opens
// (unless a probe just did) and again once Flush has persisted the tree: a restart
// closed it. Flush then fails, and so does every request that made a change of the
// batch, rather than report changes persisted that are gone. The pending directory,
// made when the batch opens, tells too: a restart that the epoch connection hides (an
// RPC API behind a proxy, which keeps its connections) loses it, unless another client's
// files flush persisted it first. A daemon stopped in good order persists its tree
// first, so nothing is lost then.

// pendingRoot is the MFS directory of the batches' pending directories, outside the
// tree Disco keeps in MFS. Each Node names its own below it.
const pendingRoot = "/disco-pending"

// Bounds on a batch. The daemon refuses changes past Internal.MFSNoFlushLimit (256 by
// default) since the last flush of any of its clients; a Node flushes well before, so
// that two Nodes over one daemon stay below it.
const maxBatch = 100

// Changes no Flush follows are persisted after DefaultFlushAfter, or closeTimeout at most
// when the Node closes.
const (
	DefaultFlushAfter = time.Second
	closeTimeout      = 5 * time.Second
)

// probeFresh is how long a probe of the epoch connection stands for the batch that opens
// next: a batch right after a Flush takes that Flush's probe. A restart in between
// counts as one during the batch, which costs its requests a retry, never a lost change.
const probeFresh = 500 * time.Millisecond

// staleAfter is the age past which a pending directory is another Node's that the daemon
// kept: a Flush removes its batch's directory, but the daemon persists that removal a
// moment later, and loses it if it stops before.
const staleAfter = time.Hour

// dropStale removes the pending directories older than staleAfter. It is best effort:
// what is left, the next start removes.
func (n *Node) dropStale(ctx context.Context) {
	es, err := n.List(ctx, pendingRoot)
	if err != nil {
		return
	}
	for _, e := range es {
		secs, _, _ := strings.Cut(e.Name, "-")
		t, err := strconv.ParseInt(secs, 10, 64)
		if err != nil || time.Since(time.Unix(t, 0)) < staleAfter {
			continue
		}
		n.mu.Lock()
		n.rm(ctx, pendingRoot+"/"+e.Name)
		n.mu.Unlock()
	}
}

// errLost is the cause of a Flush of changes that the daemon no longer holds.
var errLost = errors.New("the daemon lost changes not yet persisted (it was restarted)")

// batch is the changes made since the last Flush. The holder of n.mu in write mode owns
// it.
type batch struct {
	dir     string            // the pending directory, "" when no change is pending
	changes int               // changes made
	dials   int64             // the epoch connection's dials when the batch opened
	ctxs    []context.Context // of the requests that made the changes
	timer   *time.Timer
}

// change prepares a change of the tree, which the caller then makes with --flush=false:
// it opens a batch if none is open, and persists the open one first if it is full.
// The caller holds n.mu.
func (n *Node) change(ctx context.Context) error {
	if n.batch.changes >= maxBatch {
		if err := n.flush(ctx); err != nil {
			n.keepLost(err)
			return err
		}
	}
	if n.batch.dir == "" {
		dials, err := n.probe(ctx, false)
		if err != nil {
			return fmt.Errorf("open a batch of changes: %w", err)
		}
		dir := pendingRoot + "/" + strconv.FormatInt(time.Now().Unix(), 10) + "-" + rand.Text()
		rb := n.api.Request("files/mkdir", dir).Option("parents", true).Option("flush", false)
		if err := n.call(ctx, rb, "files mkdir", true); err != nil {
			return fmt.Errorf("open a batch of changes: %w", err)
		}
		n.batch = batch{dir: dir, dials: dials, timer: time.AfterFunc(n.flushAfter, n.flushLater)}
	}
	n.batch.changes++
	n.batch.ctxs = append(n.batch.ctxs, ctx)
	return nil
}

// trash removes p from the tree, in the open batch: files mv into its pending
// directory. The caller holds n.mu.
func (n *Node) trash(ctx context.Context, p string) error {
	if err := n.change(ctx); err != nil {
		return err
	}
	to := n.batch.dir + "/" + strconv.Itoa(n.batch.changes)
	rb := n.api.Request("files/mv", p, to).Option("flush", false)
	if err := n.call(ctx, rb, "files mv", true); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// flush persists the open batch, if any. The caller holds n.mu.
func (n *Node) flush(ctx context.Context) error {
	if n.batch.dir == "" {
		return nil
	}
	if err := n.call(ctx, n.api.Request("files/flush", "/"), "files flush", true); err != nil {
		return err
	}
	// files rm flushes, and the tree is persisted already: what this one writes is the
	// pending directory's parent and the root.
	err := n.rm(ctx, n.batch.dir)
	lost := errors.Is(err, ipfs.ErrNotFound)
	if err != nil && !lost {
		return err
	}
	if !lost {
		dials, err := n.probe(ctx, true)
		lost = err != nil || dials != n.batch.dials
	}
	if lost {
		n.probed.at = time.Time{} // from before the restart: the next batch probes again
		err = fmt.Errorf("%w: %w: %d of them", ipfs.ErrUnavailable, errLost, n.batch.changes)
		for _, c := range n.batch.ctxs {
			ack.Unavailable(c, err)
			ack.Fail(c, err)
		}
	}
	n.reset()
	return err
}

// probe probes the epoch connection, or, unless always, takes the last probe if it is
// fresh. The caller holds n.mu.
func (n *Node) probe(ctx context.Context, always bool) (int64, error) {
	if !always && time.Since(n.probed.at) < probeFresh {
		return n.probed.dials, nil
	}
	dials, err := n.epoch.probe(ctx, n.timeout)
	if err != nil {
		return 0, err
	}
	n.probed.at, n.probed.dials = time.Now(), dials
	return dials, nil
}

// reset forgets the batch.
func (n *Node) reset() {
	n.batch.timer.Stop()
	n.batch = batch{}
}

// flushLater persists a batch that no Flush followed, such as the changes of a clone
// made while serving a pull, or a request's changes so far. If it fails, the next change
// or Flush tries again; if the changes were lost, the requests that made them hear of it.
func (n *Node) flushLater() {
	n.mu.Lock()
	defer n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), n.timeout)
	defer cancel()
	err := n.flush(ctx)
	n.keepLost(err)
	if err != nil && n.batch.dir != "" {
		n.batch.timer.Reset(n.flushAfter)
	}
}

// keepLost keeps err, of a flush no Flush asked for, for the next Flush to return, if
// changes were lost: nothing changed before a Flush that returns nil is lost.
func (n *Node) keepLost(err error) {
	if errors.Is(err, errLost) {
		n.lost = err
	}
}
