package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/kubo/config"

	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/ipfs/ipfstest"
)

var loopback = []string{"/ip4/127.0.0.1/tcp/0"}

func open(t *testing.T, o Options) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestSuite(t *testing.T) {
	ipfstest.Run(t, open(t, Options{Path: t.TempDir(), Swarm: loopback}))
}

func TestFlushedChangesSurviveRestart(t *testing.T) {
	ctx := context.Background()
	o := Options{Path: t.TempDir(), Swarm: loopback}
	n := open(t, o)
	c, err := n.Add(ctx, files.NewBytesFile([]byte("kept")))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Link(ctx, "/a/b", c); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	n = open(t, o)
	r, err := n.Read(ctx, "/a/b", 0)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	defer r.Close()
	if b, _ := io.ReadAll(r); string(b) != "kept" {
		t.Errorf("after restart: %q", b)
	}
}

func TestFetchFromPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := open(t, Options{Path: t.TempDir(), Swarm: loopback})
	ida, err := a.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := open(t, Options{Path: t.TempDir(), Swarm: loopback, Peers: ida.Addresses})
	want := ipfstest.Content(3<<20, 9)
	c, err := a.Add(ctx, files.NewBytesFile(want))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Fetch(ctx, c); err != nil {
		t.Fatalf("Fetch from peer: %v", err)
	}
	r, err := b.Read(ctx, "/ipfs/"+c.String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, _ := io.ReadAll(r)
	if len(got) != len(want) {
		t.Errorf("read %d bytes from peer, want %d", len(got), len(want))
	}

	// A node that is not peered finds nothing, and says so when its context ends.
	lone := open(t, Options{Path: t.TempDir(), Swarm: loopback})
	short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if err := lone.Fetch(short, c); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Fetch without peers = %v, want deadline exceeded", err)
	}
}

func TestPrivateConfig(t *testing.T) {
	cfg, err := config.Init(io.Discard, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if err := applyOptions(cfg, Options{Swarm: DefaultSwarm}); err != nil {
		t.Fatal(err)
	}
	checks := map[string]bool{
		"no bootstrap peers":  len(cfg.Bootstrap) == 0,
		"routing none":        cfg.Routing.Type.WithDefault("") == "none",
		"mDNS off":            !cfg.Discovery.MDNS.Enabled,
		"AutoConf off":        cfg.AutoConf.Enabled == config.False,
		"AutoTLS off":         cfg.AutoTLS.Enabled == config.False,
		"NAT port map off":    cfg.Swarm.DisableNatPortMap,
		"relay client off":    cfg.Swarm.RelayClient.Enabled == config.False,
		"relay service off":   cfg.Swarm.RelayService.Enabled == config.False,
		"relay transport off": cfg.Swarm.Transports.Network.Relay == config.False,
		"providing off":       cfg.Provide.Enabled == config.False,
		"telemetry off":       cfg.Plugins.Plugins["telemetry"].Disabled,
		"no API listener":     len(cfg.Addresses.API) == 0,
		"loopback swarm":      len(cfg.Addresses.Swarm) == 1 && cfg.Addresses.Swarm[0] == "/ip4/127.0.0.1/tcp/4001",
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("private config: want %s", what)
		}
	}
	if err := applyOptions(cfg, Options{Peers: []string{"/ip4/127.0.0.1/tcp/1"}}); err == nil {
		t.Error("a peer address without /p2p/ was accepted")
	}
}

func TestReadIdentity(t *testing.T) {
	o := Options{Path: filepath.Join(t.TempDir(), "repo"), Swarm: DefaultSwarm}
	id, err := ReadIdentity(o)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ReadIdentity(o)
	if err != nil || again.ID != id.ID {
		t.Fatalf("identity changed: %s then %s (%v)", id.ID, again.ID, err)
	}
	if len(id.Addresses) != 1 || id.Addresses[0] != "/ip4/127.0.0.1/tcp/4001/p2p/"+id.ID {
		t.Errorf("addresses = %v", id.Addresses)
	}
}

// TestManyFlushes changes and flushes more often than trimEvery, so that both ways of
// flushing run, and checks that everything is there after a restart.
func TestManyFlushes(t *testing.T) {
	ctx := context.Background()
	o := Options{Path: t.TempDir(), Swarm: loopback}
	n := open(t, o)
	for i := range 2*trimEvery + 3 {
		c, err := n.Add(ctx, files.NewBytesFile([]byte(fmt.Sprint(i))))
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Link(ctx, fmt.Sprintf("/d%d/f", i%5), c); err != nil {
			t.Fatal(err)
		}
		if err := n.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = open(t, o)
	for i := 2*trimEvery - 2; i < 2*trimEvery+3; i++ {
		b, err := ipfs.ReadFile(ctx, n, fmt.Sprintf("/d%d/f", i%5), 100)
		if err != nil || string(b) != fmt.Sprint(i) {
			t.Errorf("/d%d/f = %q, %v; want %d", i%5, b, err, i)
		}
	}
}

func TestPublicConfig(t *testing.T) {
	cfg, err := config.Init(io.Discard, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if err := applyOptions(cfg, Options{Swarm: DefaultSwarm, Public: true}); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Bootstrap) == 0 || cfg.Routing.Type.WithDefault("") != "dht" || cfg.Provide.Enabled != config.True {
		t.Errorf("public config: bootstrap %v, routing %v, provide %v", cfg.Bootstrap, cfg.Routing.Type, cfg.Provide.Enabled)
	}
	if !cfg.Plugins.Plugins["telemetry"].Disabled || cfg.AutoConf.Enabled != config.False {
		t.Error("public config: telemetry and AutoConf must stay off")
	}
}
