// Package app builds a Disco from its configuration: its IPFS node, global addressing and
// the registry server, the way cmd/disco runs them and tests start them.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/discoregistry/disco/internal/config"
	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/ipfs/embedded"
	"github.com/discoregistry/disco/internal/ipfs/kubo"
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
	Node   ipfs.Node
	Store  driver.Store
	Global *global.Global
	Server *server.Server

	close func() error
}

// Open starts the embedded IPFS node, or connects to the Kubo daemon
// storage.ipfs.router.nodes names, and builds the registry on it. Close stops the node.
func Open(ctx context.Context, c *config.Config, o Options) (*Disco, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	node, closeNode, err := openNode(ctx, c, o.Log, false)
	if err != nil {
		return nil, err
	}
	d := &Disco{Node: node, close: closeNode}
	if err := d.build(ctx, c, o); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

// openNode opens the node c configures: a Kubo daemon's, or the embedded one, offline
// for maintenance if asked.
func openNode(ctx context.Context, c *config.Config, log *slog.Logger, offline bool) (ipfs.Node, func() error, error) {
	if nodes := c.IPFS.Router.Nodes; len(nodes) > 0 {
		n, err := kubo.New(ctx, nodes[0].URL)
		if err != nil {
			return nil, nil, fmt.Errorf("storage.ipfs.router.nodes[0]: %w", err)
		}
		return n, n.Close, nil
	}
	open := embedded.Open
	if offline {
		open = embedded.OpenOffline
	}
	n, err := open(ctx, NodeOptions(c, log))
	if err != nil {
		return nil, nil, err
	}
	return n, n.Close, nil
}

func (d *Disco) build(ctx context.Context, c *config.Config, o Options) error {
	store, err := driver.New(d.Node, c.IPFS.RootDirectory, c.IPFS.Uploads)
	if err != nil {
		return err
	}
	g, err := global.New(global.Options{
		Node:         d.Node,
		Store:        store,
		HashesOnly:   c.Disco.HashesOnly,
		NoClone:      c.Disco.NoClone,
		CloneTimeout: c.Disco.CloneTimeout,
		CloneMaxBlob: int64(c.Disco.CloneMaxBlob),
		CloneMaxSize: int64(c.Disco.CloneMaxSize),
		Log:          o.Log,
		Metrics:      o.Metrics,
	})
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, c, d.Node, store, g, o.Log)
	if err != nil {
		return err
	}
	d.Store, d.Global, d.Server = store, g, srv
	return nil
}

// Close stops the IPFS node.
func (d *Disco) Close() error {
	if err := d.close(); err != nil {
		return fmt.Errorf("close ipfs node: %w", err)
	}
	return nil
}

// NodeOptions are the embedded node's options from storage.ipfs.node.
func NodeOptions(c *config.Config, log *slog.Logger) embedded.Options {
	n := c.IPFS.Node
	return embedded.Options{Path: n.Path, Swarm: n.Swarm, Peers: n.Peers, Public: n.Public, Log: log}
}

// Offline is a Disco's storage opened for maintenance, with Disco stopped.
type Offline struct {
	Node    ipfs.Node
	Store   *driver.Driver
	Uploads string // the local directory of uploads in progress

	close func() error
}

// OpenOffline opens the storage c configures, the embedded node with no networking. It
// fails while Disco runs on the embedded node; on a Kubo daemon, stopping Disco is the
// operator's part.
func OpenOffline(ctx context.Context, c *config.Config) (*Offline, error) {
	node, closeNode, err := openNode(ctx, c, nil, true)
	if err != nil {
		return nil, err
	}
	store, err := driver.New(node, c.IPFS.RootDirectory, c.IPFS.Uploads)
	if err != nil {
		return nil, errors.Join(err, closeNode())
	}
	return &Offline{Node: node, Store: store, Uploads: c.IPFS.Uploads, close: closeNode}, nil
}

// CollectGarbage has the node remove the blocks nothing uses, keeping those of uploads in
// progress.
func (o *Offline) CollectGarbage(ctx context.Context) (ipfs.GCStats, error) {
	col, ok := o.Node.(ipfs.Collector)
	if !ok {
		return ipfs.GCStats{}, errors.New("this node cannot collect its garbage")
	}
	keep, err := driver.SpooledParts(o.Uploads)
	if err != nil {
		return ipfs.GCStats{}, fmt.Errorf("uploads in progress: %w", err)
	}
	return col.CollectGarbage(ctx, keep)
}

// Close checkpoints what was changed and closes the node.
func (o *Offline) Close() error { return o.close() }

// Identities returns the identity of each node c configures, whether or not Disco runs.
func Identities(ctx context.Context, c *config.Config) ([]ipfs.Identity, error) {
	if len(c.IPFS.Router.Nodes) == 0 {
		id, err := embedded.ReadIdentity(NodeOptions(c, nil))
		return []ipfs.Identity{id}, err
	}
	node, closeNode, err := openNode(ctx, c, nil, false)
	if err != nil {
		return nil, err
	}
	defer closeNode()
	id, err := node.Identity(ctx)
	return []ipfs.Identity{id}, err
}
