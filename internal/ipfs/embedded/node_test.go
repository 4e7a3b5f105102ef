package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/kubo/config"
	"github.com/ipfs/kubo/core/node"
	"github.com/ipfs/kubo/repo/fsrepo"

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

func TestRestart(t *testing.T) {
	o := Options{Path: t.TempDir(), Swarm: loopback}
	n := open(t, o)
	ipfstest.Restart(t, n, func(t *testing.T) ipfs.Node {
		if err := n.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		return open(t, o)
	})
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
		"small key cache":     cfg.Datastore.BlockKeyCacheSize.WithDefault(config.DefaultBlockKeyCacheSize) == blockKeyCache,
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

// TestManyCheckpoints checkpoints after every change and checks that everything is there
// after a restart.
func TestManyCheckpoints(t *testing.T) {
	ctx := context.Background()
	o := Options{Path: t.TempDir(), Swarm: loopback}
	n := open(t, o)
	for i := range 2*16 + 3 {
		c, err := n.Add(ctx, files.NewBytesFile([]byte(fmt.Sprint(i))))
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Link(ctx, fmt.Sprintf("/d%d/f", i%5), c); err != nil {
			t.Fatal(err)
		}
		if err := n.checkpointNow(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = open(t, o)
	for i := 2*16 - 2; i < 2*16+3; i++ {
		b, err := ipfs.ReadFile(ctx, n, fmt.Sprintf("/d%d/f", i%5), 100)
		if err != nil || string(b) != fmt.Sprint(i) {
			t.Errorf("/d%d/f = %q, %v; want %d", i%5, b, err, i)
		}
	}
}

// TestJournalAfterCrash leaves a repository as a process killed after Flush but before
// its next checkpoint leaves it: the root of the last checkpoint, and the journal. The
// changes must all be there after a start, and a record cut short must be ignored.
func TestJournalAfterCrash(t *testing.T) {
	ctx := context.Background()
	o := Options{Path: t.TempDir(), Swarm: loopback}
	n := open(t, o)
	a, b := addString(t, n, "a"), addString(t, n, "b")
	if err := n.Link(ctx, "/before", a); err != nil {
		t.Fatal(err)
	}
	if err := n.checkpointNow(ctx); err != nil {
		t.Fatal(err)
	}
	root := storedRoot(t, n)
	for _, step := range []func() error{
		func() error { return n.Link(ctx, "/keep/a", a) },
		func() error { return n.Link(ctx, "/gone", b) },
		func() error { return n.Link(ctx, "/moved/from", b) },
		func() error { return n.Move(ctx, "/moved/from", "/moved/to") },
		func() error { return n.Remove(ctx, "/gone") },
		func() error { return n.Link(ctx, "/over", a) },
		func() error { return n.Link(ctx, "/over", b) },
		func() error { return n.Flush(ctx) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	name := filepath.Join(o.Path, journalFile)
	journal, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	// The crash: the root is the one before the changes, the journal still holds them.
	setStoredRoot(t, o.Path, root)
	torn := append(journal, []byte(`{"path":"/torn","ci`)...)
	if err := os.WriteFile(name, torn, 0o600); err != nil {
		t.Fatal(err)
	}

	n = open(t, o)
	want := map[string]string{"/before": "a", "/keep/a": "a", "/moved/to": "b", "/over": "b", "/gone": "", "/moved/from": "", "/torn": ""}
	for p, content := range want {
		got, err := ipfs.ReadFile(ctx, n, p, 10)
		switch {
		case content == "" && !errors.Is(err, ipfs.ErrNotFound):
			t.Errorf("%s: %q, %v; want it gone", p, got, err)
		case content != "" && string(got) != content:
			t.Errorf("%s: %q, %v; want %q", p, got, err, content)
		}
	}
	if fi, err := os.Stat(name); err != nil || fi.Size() != 0 {
		t.Errorf("journal after start: %v, %v; want it empty", fi, err)
	}
}

func addString(t *testing.T, n *Node, s string) cid.Cid {
	t.Helper()
	c, err := n.Add(context.Background(), files.NewBytesFile([]byte(s)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func storedRoot(t *testing.T, n *Node) cid.Cid {
	t.Helper()
	b, err := n.ipfs.Repo.Datastore().Get(context.Background(), node.FilesRootDatastoreKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cid.Cast(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func setStoredRoot(t *testing.T, path string, c cid.Cid) {
	t.Helper()
	r, err := fsrepo.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Datastore().Put(context.Background(), node.FilesRootDatastoreKey, c.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func TestJournalRefusesGarbage(t *testing.T) {
	name := filepath.Join(t.TempDir(), "journal")
	if err := os.WriteFile(name, []byte("{\"path\":\"/a\"}\nnot json\n{\"path\":\"/b\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openJournal(name); err == nil {
		t.Error("a journal with a broken record in the middle was read")
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

// TestMissingBlockIsAnError reads an MFS file one of whose blocks is gone: the read fails
// at once rather than waiting for the network to bring the block.
func TestMissingBlockIsAnError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := open(t, Options{Path: t.TempDir(), Swarm: loopback})
	c, err := n.Add(ctx, files.NewBytesFile(ipfstest.Content(3<<20, 5)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Link(ctx, "/f", c); err != nil {
		t.Fatal(err)
	}
	root, err := n.ipfs.DAG.Get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ipfs.Blockstore.DeleteBlock(ctx, root.Links()[1].Cid); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = ipfs.ReadFile(ctx, n, "/f", 4<<20)
	if err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("read with a block missing: %v after %s; want an error at once", err, time.Since(start))
	}
}

// TestExpiredChangeNeverLands gives up a Link while it waits for another change to finish:
// it must not be made afterwards, behind its caller's back.
func TestExpiredChangeNeverLands(t *testing.T) {
	n := open(t, Options{Path: t.TempDir(), Swarm: []string{"/ip4/127.0.0.1/tcp/0"}})
	ctx := context.Background()
	c, err := n.Add(ctx, files.NewBytesFile([]byte("late")))
	if err != nil {
		t.Fatal(err)
	}
	hold, held := make(chan struct{}), make(chan struct{})
	go n.change(ctx, func(context.Context) error {
		close(held)
		<-hold
		return nil
	})
	<-held
	lctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := n.Link(lctx, "/late", c); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Link behind a held change = %v, want its deadline", err)
	}
	close(hold)
	if err := n.Flush(ctx); err != nil { // after every change queued before it
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := n.Stat(ctx, "/late"); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("a Link that returned its deadline was made later: %v", err)
	}
}

// TestJournalDropFirst cuts the records a checkpoint holds off a journal: those written
// after them are what a start applies.
func TestJournalDropFirst(t *testing.T) {
	name := filepath.Join(t.TempDir(), "journal")
	j, _, err := openJournal(name)
	if err != nil {
		t.Fatal(err)
	}
	j.add(record{Path: "/a", CID: "x"})
	j.add(record{Path: "/b"})
	if err := j.write(); err != nil {
		t.Fatal(err)
	}
	held := j.len
	j.add(record{Path: "/c", CID: "y"})
	if err := j.write(); err != nil {
		t.Fatal(err)
	}
	j.add(record{Path: "/d"}) // not written yet
	if err := j.dropFirst(held); err != nil {
		t.Fatal(err)
	}
	if err := j.write(); err != nil {
		t.Fatal(err)
	}
	j.Close()
	_, recs, err := openJournal(name)
	if err != nil || len(recs) != 2 || recs[0].Path != "/c" || recs[1].Path != "/d" {
		t.Errorf("after dropFirst: %v, %v; want /c and /d", recs, err)
	}
}
