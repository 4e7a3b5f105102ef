// Package app builds a Disco from its configuration: its IPFS nodes, the registry's
// storage over them, global addressing and the registry server, the way cmd/disco runs
// them and tests start them.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/discoregistry/disco/internal/cache"
	"github.com/discoregistry/disco/internal/config"
	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/index"
	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/ipfs/embedded"
	"github.com/discoregistry/disco/internal/ipfs/kubo"
	"github.com/discoregistry/disco/internal/mirror"
	"github.com/discoregistry/disco/internal/router"
	"github.com/discoregistry/disco/internal/server"
)

// Options are what a Disco takes besides its configuration.
type Options struct {
	// Log gets Disco's own log lines; nil discards them.
	Log *slog.Logger
	// Metrics registers Disco's metrics; nil registers none.
	Metrics prometheus.Registerer
}

// Disco is a Disco ready to serve.
type Disco struct {
	*Storage
	Global *global.Global
	// Mirror pulls images through from proxy.remoteurl; nil unless configured.
	Mirror *mirror.Mirror
	Server *server.Server
}

// Open starts the embedded IPFS node, or connects to the Kubo daemons
// storage.ipfs.router.nodes names, and builds the registry on them. Close stops them.
func Open(ctx context.Context, c *config.Config, o Options) (*Disco, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s, err := openStorage(ctx, c, o.Log, false)
	if err != nil {
		return nil, err
	}
	d := &Disco{Storage: s}
	if err := d.build(ctx, c, o); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

func (d *Disco) build(ctx context.Context, c *config.Config, o Options) error {
	g, err := global.New(global.Options{
		Node:              d.Node,
		Store:             d.Store,
		HashesOnly:        c.Disco.HashesOnly,
		CatalogPushedOnly: c.Disco.Catalog.PushedOnly,
		NoClone:           c.Disco.NoClone,
		CloneTimeout:      c.Disco.CloneTimeout,
		CloneMaxBlob:      int64(c.Disco.CloneMaxBlob),
		CloneMaxSize:      int64(c.Disco.CloneMaxSize),
		Log:               o.Log,
		Metrics:           o.Metrics,
	})
	if err != nil {
		return err
	}
	d.Global = g
	var ix *index.Index
	if c.UI.Enabled {
		ix = index.New(index.Options{StateDir: c.IPFS.Uploads, Log: o.Log, Snapshot: d.snapshot(c)})
	}
	if c.Registry.Proxy.RemoteURL != "" {
		if d.Mirror, err = d.newMirror(c, ix, o); err != nil {
			return err
		}
	}
	srv, err := server.New(ctx, c, server.Backend{Nodes: d.Nodes, Store: d.Store, Global: g, Mirror: d.Mirror, Index: ix}, o.Log)
	if err != nil {
		return err
	}
	d.Server = srv
	return nil
}

// newMirror makes the mirror of proxy.remoteurl, which tells ix, if set, what it changes.
// It asks its peers for what they mirrored over the embedded node's libp2p host; over Kubo
// daemons, or with disco.noclone, it asks the upstream for everything.
func (d *Disco) newMirror(c *config.Config, ix *index.Index, o Options) (*mirror.Mirror, error) {
	var h host.Host
	if n, ok := d.Node.(ipfs.Host); ok && !c.Disco.NoClone {
		h = n.Host()
	}
	infos, err := embedded.ParsePeers(c.IPFS.Node.Peers)
	if err != nil {
		return nil, fmt.Errorf("storage.ipfs.node.peers: %w", err)
	}
	var trusted []peer.ID
	for _, info := range infos {
		trusted = append(trusted, info.ID)
	}
	p := c.Registry.Proxy
	ttl := mirror.DefaultTTL
	if p.TTL != nil {
		ttl = max(*p.TTL, 0) // 0 or less: never expire, as in Distribution
	}
	opts := mirror.Options{
		RemoteURL: p.RemoteURL, Username: p.Username, Password: p.Password,
		UpstreamTimeout: c.Disco.UpstreamTimeout, PeerTimeout: c.Disco.PeerTimeout,
		Global: d.Global, Store: d.Store, Host: h, Trusted: trusted,
		TTL: ttl, StateDir: c.IPFS.Uploads, Log: o.Log, Metrics: o.Metrics,
	}
	if ix != nil {
		opts.Index = ix
	}
	m, err := mirror.New(opts)
	if err != nil {
		return nil, err
	}
	o.Log.Info("mirror of "+p.RemoteURL, "peers", h != nil, "credentials", p.Username != "")
	return m, nil
}

// Close stops the mirror, if any, and closes the nodes.
func (d *Disco) Close() error {
	var err error
	if d.Mirror != nil {
		err = d.Mirror.Close()
	}
	return errors.Join(err, d.Storage.Close())
}

// Storage is the registry's storage: its IPFS nodes and the Store over them, with the
// secondary cache if one is configured.
type Storage struct {
	// Node is the first node, which global addressing fetches from the network with; nil
	// with storage.ipfs.cacheonly, which has no node at all.
	Node ipfs.Node
	// Nodes are all the nodes, one unless several Kubo daemons are configured.
	Nodes []ipfs.Node
	Store driver.Store
	// Uploads is the local directory of uploads in progress.
	Uploads string

	closers []func() error
}

// openStorage opens the nodes c configures, Kubo daemons' or the embedded one (offline,
// for maintenance, if asked), and the Store over them.
func openStorage(ctx context.Context, c *config.Config, log *slog.Logger, offline bool) (_ *Storage, err error) {
	s := &Storage{Uploads: c.IPFS.Uploads}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()
	if c.IPFS.CacheOnly {
		d, err := cacheDriver(ctx, c)
		if err != nil {
			return nil, err
		}
		s.Store = cache.Only(d)
		return s, nil
	}
	var routed []router.Node
	for i, n := range c.IPFS.Router.Nodes {
		node, err := kubo.New(ctx, n.URL)
		if err != nil {
			return nil, fmt.Errorf("storage.ipfs.router.nodes[%d]: %w", i, err)
		}
		s.closers = append(s.closers, node.Close)
		store, err := driver.New(node, c.IPFS.RootDirectory, c.IPFS.Uploads)
		if err != nil {
			return nil, err
		}
		s.Nodes = append(s.Nodes, node)
		routed = append(routed, router.Node{Name: n.URL, Store: store, IPFS: node})
	}
	if len(routed) == 0 {
		open := embedded.Open
		if offline {
			open = embedded.OpenOffline
		}
		opts, err := NodeOptions(c, log)
		if err != nil {
			return nil, err
		}
		node, err := open(ctx, opts)
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, node.Close)
		store, err := driver.New(node, c.IPFS.RootDirectory, c.IPFS.Uploads)
		if err != nil {
			return nil, err
		}
		s.Nodes = append(s.Nodes, node)
		routed = append(routed, router.Node{Store: store, IPFS: node})
	}
	s.Node = s.Nodes[0]
	s.Store = routed[0].Store
	if len(routed) > 1 {
		if s.Store, err = router.New(routed); err != nil {
			return nil, err
		}
	}
	if s.Store, err = withCache(ctx, c, s.Store, log); err != nil {
		return nil, err
	}
	return s, nil
}

// snapshot returns how the index reads the registry as it was: by CID, on the one node;
// over several nodes, it reads the registry as it is.
func (s *Storage) snapshot(c *config.Config) func(context.Context) (storagedriver.StorageDriver, error) {
	if len(s.Nodes) != 1 || c.IPFS.Cache != nil {
		return nil
	}
	return func(ctx context.Context) (storagedriver.StorageDriver, error) {
		d, err := driver.Snapshot(ctx, s.Node, c.IPFS.RootDirectory)
		if errors.Is(err, ipfs.ErrNotFound) {
			return nil, nil // nothing stored yet
		}
		return d, err
	}
}

// Close closes the nodes.
func (s *Storage) Close() error {
	var errs []error
	for _, f := range s.closers {
		if err := f(); err != nil {
			errs = append(errs, fmt.Errorf("close ipfs node: %w", err))
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}

// OpenOffline opens the storage c configures for maintenance, with Disco stopped: the
// embedded node with no networking, which fails while Disco runs on it; on Kubo daemons,
// stopping Disco is the operator's part.
func OpenOffline(ctx context.Context, c *config.Config) (*Storage, error) {
	return openStorage(ctx, c, nil, true)
}

// CollectGarbage has every node remove the blocks nothing uses, keeping those of uploads
// in progress.
func (s *Storage) CollectGarbage(ctx context.Context) (ipfs.GCStats, error) {
	keep, err := driver.SpooledParts(s.Uploads)
	if err != nil {
		return ipfs.GCStats{}, fmt.Errorf("uploads in progress: %w", err)
	}
	var total ipfs.GCStats
	for _, n := range s.Nodes {
		col, ok := n.(ipfs.Collector)
		if !ok {
			return total, errors.New("this node cannot collect its garbage")
		}
		stats, err := col.CollectGarbage(ctx, keep)
		total.Blocks += stats.Blocks
		total.Freed += stats.Freed
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Identities returns the identity of each node c configures, whether or not Disco runs.
func Identities(ctx context.Context, c *config.Config) ([]ipfs.Identity, error) {
	if c.IPFS.CacheOnly {
		return nil, errors.New("storage.ipfs.cacheonly: Disco runs no IPFS node")
	}
	if len(c.IPFS.Router.Nodes) == 0 {
		opts, err := NodeOptions(c, nil)
		if err != nil {
			return nil, err
		}
		id, err := embedded.ReadIdentity(opts)
		return []ipfs.Identity{id}, err
	}
	var ids []ipfs.Identity
	for i, n := range c.IPFS.Router.Nodes {
		node, err := kubo.New(ctx, n.URL)
		if err != nil {
			return ids, fmt.Errorf("storage.ipfs.router.nodes[%d]: %w", i, err)
		}
		id, err := node.Identity(ctx)
		node.Close()
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// NodeOptions are the embedded node's options from storage.ipfs.node.
func NodeOptions(c *config.Config, log *slog.Logger) (embedded.Options, error) {
	n := c.IPFS.Node
	o := embedded.Options{Path: n.Path, Swarm: n.Swarm, Peers: n.Peers, Public: n.Public, Routing: n.Routing, Log: log}
	if n.SwarmKey != "" {
		key, err := os.ReadFile(n.SwarmKey)
		if err != nil {
			return o, fmt.Errorf("storage.ipfs.node.swarmkey: %w", err)
		}
		o.SwarmKey = key
	}
	return o, nil
}
