package embedded

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/discoregistry/disco/internal/ipfs/ipfstest"
)

// TestPeerBack stops a configured peer, has the node fail to dial it, which puts it in
// libp2p's backoff for 9 s, and starts the peer again: what only the peer holds is
// fetched at once all the same.
func TestPeerBack(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ao := Options{Path: t.TempDir(), Swarm: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}}
	a := open(t, ao)
	c, err := a.Add(ctx, files.NewBytesFile(ipfstest.Content(3<<20, 7)))
	if err != nil {
		t.Fatal(err)
	}
	ida, err := a.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := open(t, Options{Path: t.TempDir(), Swarm: loopback, Peers: ida.Addresses})
	// Three failed dials: 5 s, then 5+1 s, then 5+4 s of backoff.
	for range 3 {
		dctx, cancel := context.WithTimeout(network.WithForceDirectDial(ctx, "test"), 5*time.Second)
		err := b.ipfs.PeerHost.Connect(dctx, b.redialer.peers[0])
		cancel()
		if err == nil {
			t.Fatal("dialed a stopped node")
		}
	}
	open(t, ao)
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := b.Stat(sctx, "/ipfs/"+c.String()); err != nil {
		t.Fatalf("after the peer came back: %v", err)
	}
	t.Logf("found on the peer %s after it came back", time.Since(start).Round(time.Millisecond))
}
