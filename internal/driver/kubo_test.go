package driver

import (
	"context"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/ipfs/kubo"
	"github.com/discoregistry/disco/internal/kubotest"
)

// TestKubo runs the tests over the node of a Kubo daemon, with Disco's import profile.
func TestKubo(t *testing.T) {
	d := kubotest.New(t)
	d.Run("config", "profile", "apply", "unixfs-v1-2025")
	d.Start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := kubo.New(ctx, d.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	runNodeTests(t, n)
}
