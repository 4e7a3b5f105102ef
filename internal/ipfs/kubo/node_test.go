package kubo

import (
	"context"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/ipfs/ipfstest"
	"github.com/discoregistry/disco/internal/kubotest"
)

// start starts a daemon with Disco's import profile and returns it and its node.
func start(t *testing.T) (*kubotest.Daemon, *Node) {
	t.Helper()
	d := kubotest.New(t)
	d.Run("config", "profile", "apply", "unixfs-v1-2025")
	d.Start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := New(ctx, d.APIURL())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return d, n
}

func TestSuite(t *testing.T) {
	_, n := start(t)
	ipfstest.Run(t, n)
}

// TestRestart kills the daemon: what was flushed must be there when it starts again.
func TestRestart(t *testing.T) {
	d, n := start(t)
	ipfstest.Restart(t, n, func(t *testing.T) ipfs.Node {
		d.Kill()
		d.Start()
		return n
	})
}
