package kubo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"

	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/ipfs/ipfstest"
)

// waitIdle waits until n has no change pending: the timer flushed them.
func waitIdle(t *testing.T, n *Node) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n.mu.RLock()
		pending := n.batch.dir != ""
		n.mu.RUnlock()
		if !pending {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("changes no Flush followed still pending after 20s")
		}
	}
}

// TestLostFoundByTimer has the timer's flush find a request's first change lost: the
// request's Flush must say so, though the batch it finishes is a new one.
func TestLostFoundByTimer(t *testing.T) {
	ctx, d, n, a := startBatching(t, 300*time.Millisecond)
	if err := n.Link(ctx, "/req/a", a); err != nil { // first change of a request
		t.Fatal(err)
	}
	d.Kill()
	d.Start()
	waitIdle(t, n)                                   // flushLater ran into errLost and reset the batch
	if err := n.Link(ctx, "/req/b", a); err != nil { // the same request goes on
		t.Fatal(err)
	}
	err := n.Flush(ctx)
	_, serr := n.Stat(ctx, "/req/a")
	if err == nil && errors.Is(serr, ipfs.ErrNotFound) {
		t.Errorf("Flush = nil, but /req/a, changed before it, is lost")
	}
}

// TestLostIsNotNotFound loses a full batch: the change that finds it lost fails, but not
// with ErrNotFound, which a caller takes for "already gone", and the next Flush fails.
func TestLostIsNotNotFound(t *testing.T) {
	ctx, d, n, a := startBatching(t, time.Hour)
	if err := n.Link(ctx, "/nf/x", a); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range maxBatch {
		if err := n.Link(ctx, fmt.Sprintf("/nf/%d", i), a); err != nil {
			t.Fatal(err)
		}
	}
	d.Kill()
	d.Start()
	err := n.Remove(ctx, "/nf/x")
	t.Logf("Remove: %v", err)
	if errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("Remove after the batch was lost matches ErrNotFound (a caller takes it for 'already gone')")
	}
	ferr := n.Flush(ctx)
	_, serr := n.Stat(ctx, "/nf/0")
	if ferr == nil && errors.Is(serr, ipfs.ErrNotFound) {
		t.Errorf("Flush = nil after %d changes were lost", maxBatch)
	}
}

// TestLostWithSecondNode has a second Node over the same daemon (a second Disco) persist
// the first's pending directory with its Flush: the first's changes made after it and
// lost in a restart are found lost all the same.
func TestLostWithSecondNode(t *testing.T) {
	ctx, d, n, a := startBatching(t, time.Hour)
	n2, err := New(ctx, d.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	n2.flushAfter = time.Hour
	if err := n.Link(ctx, "/two/a", a); err != nil {
		t.Fatal(err)
	}
	if err := n2.Link(ctx, "/other/b", a); err != nil {
		t.Fatal(err)
	}
	if err := n2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Link(ctx, "/two/c", a); err != nil {
		t.Fatal(err)
	}
	d.Kill()
	d.Start()
	err = n.Flush(ctx)
	_, serr := n.Stat(ctx, "/two/c")
	if err == nil && errors.Is(serr, ipfs.ErrNotFound) {
		t.Errorf("Flush = nil, but /two/c is lost")
	}
}

// TestLostAfterDropStale has a second New (as disco id makes) remove a stale pending
// directory, which persists the running node's: a restart after that is found all the
// same.
func TestLostAfterDropStale(t *testing.T) {
	ctx, d, n, a := startBatching(t, time.Hour)
	d.Run("files", "mkdir", "-p", fmt.Sprintf("%s/%d-OLD", pendingRoot, time.Now().Add(-2*time.Hour).Unix()))
	d.Run("files", "flush", "/")
	if err := n.Link(ctx, "/ds/a", a); err != nil {
		t.Fatal(err)
	}
	n2, err := New(ctx, d.APIURL()) // as disco id does
	if err != nil {
		t.Fatal(err)
	}
	n2.Close()
	time.Sleep(4 * time.Second) // the daemon publishes what files rm flushed
	d.Kill()
	d.Start()
	err = n.Flush(ctx)
	_, serr := n.Stat(ctx, "/ds/a")
	if err == nil && errors.Is(serr, ipfs.ErrNotFound) {
		t.Errorf("Flush = nil, but /ds/a is lost")
	}
}

// TestRemoveThroughFile removes a path below a file: not found, as before batches.
func TestRemoveThroughFile(t *testing.T) {
	ctx, _, n, a := startBatching(t, time.Hour)
	if err := n.Link(ctx, "/tf/file", a); err != nil {
		t.Fatal(err)
	}
	if err := n.Remove(ctx, "/tf/file/below"); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("Remove through a file = %v, want ErrNotFound", err)
	}
}

// gatewayConfigured reads a 2 MiB file over a daemon configured with args, whose gateway
// passes the probe but refuses some reads: they go through the RPC API instead.
func gatewayConfigured(t *testing.T, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, _ := start(t)
	d.Run(args...)
	d.Restart()
	n, err := New(ctx, d.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	t.Logf("gateway %q", n.gateway)
	want := ipfstest.Content(2<<20, 7)
	c, err := n.Add(ctx, files.NewBytesFile(want))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Link(ctx, "/gwc/big", c); err != nil {
		t.Fatal(err)
	}
	r, err := n.Read(ctx, "/gwc/big", 0)
	if err != nil {
		t.Fatalf("Read of a 2 MiB file with %v: %v", args, err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("%d bytes, %v", len(got), err)
	}
}

func TestGatewayOnlyTrustless(t *testing.T) {
	gatewayConfigured(t, "config", "--json", "Gateway.DeserializedResponses", "false")
}

func TestGatewayRangeLimit(t *testing.T) {
	gatewayConfigured(t, "config", "--json", "Gateway.MaxRangeRequestFileSize", `"1MiB"`)
}

// TestForceLinkAtNoFlushLimit links in place of a file once other changes took the daemon
// to Internal.MFSNoFlushLimit: files cp --force unlinks the file before the daemon checks
// the limit, so a link refused there would have removed what it was to replace.
func TestForceLinkAtNoFlushLimit(t *testing.T) {
	d := daemon(t, []string{"config", "--json", "Internal.MFSNoFlushLimit", "3"})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	n, err := New(ctx, d.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	a, b := addBytes(t, ctx, n, "a"), addBytes(t, ctx, n, "b")
	if err := n.Link(ctx, "/lim/f", a); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // with the batch's pending directory, the daemon's limit
		if err := n.Link(ctx, fmt.Sprintf("/lim/g%d", i), a); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Link(ctx, "/lim/f", b); err != nil {
		t.Fatalf("Link at the daemon's limit: %v", err)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if e, err := n.Stat(ctx, "/lim/f"); err != nil || e.CID != b {
		t.Errorf("Stat(/lim/f) after a link at the limit = %v, %v; want %s", e.CID, err, b)
	}
}

// TestLostBehindProxy restarts a daemon whose RPC API the node reaches through an HTTP
// reverse proxy (as an https:// URL implies), which keeps the node's connections, the
// epoch connection's too, across the restart: the batch's pending directory tells.
func TestLostBehindProxy(t *testing.T) {
	d := daemon(t)
	u, err := url.Parse(d.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(u))
	defer proxy.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	n, err := New(ctx, proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Link(ctx, "/proxied/a", addBytes(t, ctx, n, "a")); err != nil {
		t.Fatal(err)
	}
	d.Kill()
	d.Start()
	if err := n.Flush(ctx); !errors.Is(err, errLost) {
		_, serr := n.Stat(ctx, "/proxied/a")
		t.Errorf("Flush after a restart behind a proxy = %v (Stat: %v), want errLost", err, serr)
	}
}
