package kubo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/kubotest"
)

// startBatching starts a daemon whose node persists changes no Flush follows after
// flushAfter, and adds a small file to link.
func startBatching(t *testing.T, flushAfter time.Duration) (context.Context, *kubotest.Daemon, *Node, cid.Cid) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	d, n := start(t)
	n.flushAfter = flushAfter
	return ctx, d, n, addBytes(t, ctx, n, "a")
}

func addBytes(t *testing.T, ctx context.Context, n *Node, b string) cid.Cid {
	t.Helper()
	c, err := n.Add(ctx, files.NewBytesFile([]byte(b)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLostBatchFails kills the daemon between a change and its Flush: the daemon lost
// the change, and Flush must say so rather than report it persisted.
func TestLostBatchFails(t *testing.T) {
	ctx, d, n, a := startBatching(t, time.Hour)
	if err := n.Link(ctx, "/lost/a", a); err != nil {
		t.Fatal(err)
	}
	d.Kill()
	d.Start()
	if err := n.Flush(ctx); !errors.Is(err, ipfs.ErrUnavailable) || !errors.Is(err, errLost) {
		t.Fatalf("Flush after the daemon lost a change = %v, want ErrUnavailable and errLost", err)
	}
	if _, err := n.Stat(ctx, "/lost/a"); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("Stat of the lost change = %v: the change was persisted without a Flush", err)
	}
	// The next batch is persisted as usual.
	if err := n.Link(ctx, "/kept/a", a); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatalf("Flush of the next batch: %v", err)
	}
	if es, err := n.List(ctx, pendingRoot); err != nil || len(es) != 0 {
		t.Errorf("pending directories left after a Flush: %v, %v", es, err)
	}
	d.Kill()
	d.Start()
	if _, err := n.Stat(ctx, "/kept/a"); err != nil {
		t.Errorf("Stat of a change flushed before a restart: %v", err)
	}
}

// TestStalePendingDropped starts a node over a daemon that kept the pending directories
// of Nodes gone (the daemon stopped before it persisted their removal): those of an
// hour ago are removed, others kept.
func TestStalePendingDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, n := start(t)
	old := fmt.Sprintf("%s/%d-OLD", pendingRoot, time.Now().Add(-2*time.Hour).Unix())
	recent := fmt.Sprintf("%s/%d-RECENT", pendingRoot, time.Now().Unix())
	d.Run("files", "mkdir", "-p", old+"/1")
	d.Run("files", "mkdir", "-p", recent+"/1")
	n2, err := New(ctx, d.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if _, err := n.Stat(ctx, old); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("Stat of a pending directory of two hours ago = %v, want it removed", err)
	}
	if _, err := n.Stat(ctx, recent); err != nil {
		t.Errorf("Stat of a recent pending directory = %v, want it kept", err)
	}
}

// TestLongBatch makes more changes without a Flush than the daemon takes unflushed
// (Internal.MFSNoFlushLimit, 256 by default): the node persists them on its own first.
func TestLongBatch(t *testing.T) {
	ctx, _, n, a := startBatching(t, time.Hour)
	for i := range 300 {
		if err := n.Link(ctx, fmt.Sprintf("/long/%d", i), a); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
}

// TestFlushLater makes a change that no Flush follows, as a clone made while serving a
// pull does: it is persisted a moment later all the same.
func TestFlushLater(t *testing.T) {
	ctx, d, n, a := startBatching(t, 100*time.Millisecond)
	if err := n.Link(ctx, "/later/a", a); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, n)
	d.Kill()
	d.Start()
	if _, err := n.Stat(ctx, "/later/a"); err != nil {
		t.Errorf("Stat after a restart of a change no Flush followed: %v", err)
	}
}

// counting counts the calls that go through it, by RPC command.
type counting struct {
	next  http.RoundTripper
	mu    sync.Mutex
	calls []string
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.calls = append(c.calls, strings.TrimPrefix(r.URL.Path, "/api/v0/"))
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

// take returns the calls counted since the last take.
func (c *counting) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := c.calls
	c.calls = nil
	return calls
}

// startCounted starts a daemon and a node whose RPC calls, and probes of its epoch
// connection, are counted.
func startCounted(t *testing.T) (ctx context.Context, n *Node, rpcCalls, probes *counting) {
	rpcCalls = &counting{next: http.DefaultTransport}
	_, n = start(t, WithHTTPClient(&http.Client{Transport: rpcCalls}))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	probes = &counting{next: n.epoch.client.Transport}
	n.epoch.client.Transport = probes
	return ctx, n, rpcCalls, probes
}

// TestReleaseCalls counts the calls of a release: one listing of the hold root, and a
// files mv of each hold released.
func TestReleaseCalls(t *testing.T) {
	ctx, n, rpcCalls, _ := startCounted(t)
	a := addBytes(t, ctx, n, "a")
	if err := n.Hold(ctx, "/up/1/data", a); err != nil {
		t.Fatal(err)
	}
	rpcCalls.take()
	for _, c := range []struct {
		hold string
		want []string
	}{
		{"/up/2", []string{"files/ls"}},
		{"/up/1", []string{"files/ls", "files/mkdir", "files/mv"}}, // the batch's pending directory, then the release
		{"/up/1", []string{"files/ls"}},
	} {
		if err := n.Release(ctx, c.hold); err != nil {
			t.Fatal(err)
		}
		if got := rpcCalls.take(); !slices.Equal(got, c.want) {
			t.Errorf("Release(%s): calls %q, want %q", c.hold, got, c.want)
		}
	}
}

// TestBatchCalls counts the calls a batch costs: a link in place of a file is one files
// cp, a batch opened right after a Flush takes that Flush's probe of the epoch
// connection, and a move copies from the MFS path, with no files stat first.
func TestBatchCalls(t *testing.T) {
	ctx, n, rpcCalls, probes := startCounted(t)
	a, b := addBytes(t, ctx, n, "a"), addBytes(t, ctx, n, "b")
	rpcCalls.take()

	check := func(what string, want ...string) {
		t.Helper()
		if err := n.Flush(ctx); err != nil {
			t.Fatalf("%s: Flush: %v", what, err)
		}
		if got := rpcCalls.take(); !slices.Equal(got, want) {
			t.Errorf("%s: calls %q, want %q", what, got, want)
		}
	}
	if err := n.Link(ctx, "/calls/f", a); err != nil {
		t.Fatal(err)
	}
	check("a new link", "files/mkdir", "files/cp", "files/flush", "files/rm")
	probes.take()
	if err := n.Link(ctx, "/calls/f", b); err != nil {
		t.Fatal(err)
	}
	check("a link in place of a file", "files/mkdir", "files/cp", "files/flush", "files/rm")
	if got := probes.take(); !slices.Equal(got, []string{"version"}) {
		t.Errorf("probes of a batch opened right after a Flush: %q, want one, after its flush", got)
	}
	if e, err := n.Stat(ctx, "/calls/f"); err != nil || e.CID != b {
		t.Errorf("Stat after the link in place of a file = %v, %v, want %s", e, err, b)
	}
	if err := n.Link(ctx, "/calls/dir/f", a); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rpcCalls.take()
	if err := n.Link(ctx, "/calls/dir", b); err != nil {
		t.Fatal(err)
	}
	check("a link in place of a directory", "files/mkdir", "files/cp", "files/mv", "files/cp", "files/flush", "files/rm")
	if e, err := n.Stat(ctx, "/calls/dir"); err != nil || e.CID != b {
		t.Errorf("Stat after the link in place of a directory = %v, %v, want %s", e, err, b)
	}
	if es, err := n.List(ctx, pendingRoot); err != nil || len(es) != 0 {
		t.Errorf("pending directories left after a Flush: %v, %v", es, err)
	}
	rpcCalls.take()
	if err := n.Move(ctx, "/calls/f", "/calls/moved/f"); err != nil {
		t.Fatal(err)
	}
	check("a move", "files/mkdir", "files/cp", "files/mv", "files/flush", "files/rm")
	if e, err := n.Stat(ctx, "/calls/moved/f"); err != nil || e.CID != b {
		t.Errorf("Stat after the move = %v, %v, want %s", e, err, b)
	}
}
