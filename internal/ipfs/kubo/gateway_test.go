package kubo

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"

	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/ipfs/ipfstest"
	"github.com/discoregistry/disco/internal/kubotest"
)

// countGateway counts the requests a client sends to a gateway (/ipfs/...), not the RPC
// API (/api/v0/...).
type countGateway struct {
	rt http.RoundTripper
	n  atomic.Int64
}

func (c *countGateway) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasPrefix(r.URL.Path, "/ipfs/") && r.Method == http.MethodGet {
		c.n.Add(1)
	}
	return c.rt.RoundTrip(r)
}

func newCounted(t *testing.T, ctx context.Context, d *kubotest.Daemon) (*Node, *countGateway) {
	t.Helper()
	count := &countGateway{rt: newClient().Transport}
	n, err := New(ctx, d.APIURL(), WithHTTPClient(&http.Client{Transport: count}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, count
}

// TestGatewayReads reads a file of several MiB at offsets around where reads go to the
// gateway, and small files, which do not.
func TestGatewayReads(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, _ := start(t)
	n, count := newCounted(t, ctx, d)
	if n.gateway == "" {
		t.Fatal("the node did not find the daemon's gateway")
	}
	want := ipfstest.Content(3<<20+7, 5)
	c, err := n.Add(ctx, files.NewBytesFile(want))
	if err != nil {
		t.Fatal(err)
	}
	small := addBytes(t, ctx, n, "small")
	if err := n.Link(ctx, "/gw/big", c); err != nil {
		t.Fatal(err)
	}
	if err := n.Link(ctx, "/gw/small", small); err != nil {
		t.Fatal(err)
	}
	size := int64(len(want))
	for _, off := range []int64{0, 1, gatewayFrom - 1, gatewayFrom, gatewayFrom + 1, 2<<20 + 3, size - gatewayFrom - 1, size - gatewayFrom, size - 1, size, size + 10} {
		r, err := n.Read(ctx, "/gw/big", off)
		if err != nil {
			t.Fatalf("Read at %d: %v", off, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, want[min(off, size):]) {
			t.Errorf("Read at %d: %d bytes, %v; want %d", off, len(got), err, size-min(off, size))
		}
	}
	if count.n.Load() == 0 {
		t.Error("no read of a file of 3 MiB went to the gateway")
	}
	before := count.n.Load()
	if got, err := ipfs.ReadFile(ctx, n, "/gw/small", 100); err != nil || string(got) != "small" {
		t.Errorf("Read of a small file: %q, %v", got, err)
	}
	if count.n.Load() != before {
		t.Error("the read of a small file went to the gateway")
	}
}

// TestGatewayOfAnother configures the daemon to say that its gateway is another
// daemon's: the node must not take that one, whose content is not the daemon's, and reads
// all through the RPC API.
func TestGatewayOfAnother(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	other, _ := start(t)
	d, _ := start(t)
	gw := other.Run("config", "Addresses.Gateway")
	d.Run("config", "Addresses.Gateway", strings.TrimSpace(gw))
	n, count := newCounted(t, ctx, d)
	if n.gateway != "" {
		t.Fatalf("the node took %s, another daemon's gateway, for its daemon's", n.gateway)
	}
	count.n.Store(0) // the probe's
	want := ipfstest.Content(2<<20, 6)
	c, err := n.Add(ctx, files.NewBytesFile(want))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Link(ctx, "/big", c); err != nil {
		t.Fatal(err)
	}
	if got, err := ipfs.ReadFile(ctx, n, "/big", int64(len(want))); err != nil || !bytes.Equal(got, want) {
		t.Errorf("Read without a gateway: %d bytes, %v", len(got), err)
	}
	if count.n.Load() != 0 {
		t.Errorf("%d reads went to a gateway", count.n.Load())
	}
}

func TestGatewayBase(t *testing.T) {
	for _, tc := range []struct {
		listen, rpcHost, want string
	}{
		{"/ip4/127.0.0.1/tcp/8080", "127.0.0.1", "http://127.0.0.1:8080"},
		{"/ip4/127.0.0.1/tcp/8080", "localhost", "http://127.0.0.1:8080"},
		{"/ip4/0.0.0.0/tcp/8080", "10.0.0.11", "http://10.0.0.11:8080"},
		{"/ip6/::/tcp/8080", "fd00::1", "http://[fd00::1]:8080"},
		{"/ip4/10.0.0.11/tcp/8080", "10.0.0.11", "http://10.0.0.11:8080"},
		{"/ip4/127.0.0.1/tcp/8080", "10.0.0.11", ""}, // the daemon's loopback is not this machine's
		{"/ip4/10.0.0.12/tcp/8080", "10.0.0.11", ""},
		{"/unix/run/gw.sock", "127.0.0.1", ""},
		{"nonsense", "127.0.0.1", ""},
	} {
		got, _ := gatewayBase(tc.listen, tc.rpcHost)
		if got != tc.want {
			t.Errorf("gatewayBase(%q, %q) = %q, want %q", tc.listen, tc.rpcHost, got, tc.want)
		}
	}
}
