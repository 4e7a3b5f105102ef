package kubo

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"

	"github.com/discoregistry/disco/internal/ack"
	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/ipfs/ipfstest"
	"github.com/discoregistry/disco/internal/kubotest"
)

// daemon starts a daemon with Disco's import profile, after running the config
// commands given (each the arguments of one ipfs command).
func daemon(t *testing.T, config ...[]string) *kubotest.Daemon {
	t.Helper()
	d := kubotest.New(t)
	d.Run("config", "profile", "apply", "unixfs-v1-2025")
	for _, args := range config {
		d.Run(args...)
	}
	d.Start()
	return d
}

// start starts a daemon with Disco's import profile and returns it and its node, made
// with opts.
func start(t *testing.T, opts ...Option) (*kubotest.Daemon, *Node) {
	t.Helper()
	d := daemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := New(ctx, d.APIURL(), opts...)
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

// TestFetchFromPeer fetches through daemon B what daemon A added, B peered with A; a
// daemon without peers finds nothing, and says so when its context ends.
func TestFetchFromPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, na := start(t)
	want := ipfstest.Content(3<<20, 9)
	c, err := na.Add(ctx, files.NewBytesFile(want))
	if err != nil {
		t.Fatal(err)
	}
	b := kubotest.New(t)
	b.Run("config", "profile", "apply", "unixfs-v1-2025")
	b.Start(a.PeerAddr())
	nb, err := New(ctx, b.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	// Kubo's peering service first dials its peers after a delay of several seconds.
	b.Run("swarm", "connect", a.PeerAddr())
	if err := nb.Fetch(ctx, c); err != nil {
		t.Fatalf("Fetch from peer: %v", err)
	}
	a.Stop() // what B reads now, it has
	got, err := ipfs.ReadFile(ctx, nb, "/ipfs/"+c.String(), int64(len(want)))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("read %d bytes fetched from a peer (%v), want %d", len(got), err, len(want))
	}

	_, lone := start(t)
	short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if err := lone.Fetch(short, c); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Fetch without peers = %v, want deadline exceeded", err)
	}
}

// TestDaemonDown kills the daemon: calls fail at once with ErrUnavailable, and the
// request they serve hears of it; once the daemon is back, they work again.
func TestDaemonDown(t *testing.T) {
	d, n := start(t)
	ctx, scope := ack.Track(context.Background())
	d.Kill()
	for i := range 3 {
		start := time.Now()
		_, err := n.Stat(ctx, "/")
		if !errors.Is(err, ipfs.ErrUnavailable) {
			t.Fatalf("Stat %d with the daemon down = %v, want ErrUnavailable", i, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Stat %d with the daemon down took %s", i, took)
		}
	}
	if scope.Unavailable() == nil {
		t.Error("the request was not told that the node is unavailable")
	}
	d.Start()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, err := n.Stat(context.Background(), "/")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon is back, and Stat still fails: %v", err)
		}
	}
}
