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

// Open starts the IPFS node and builds the registry on it. Close stops the node.
func Open(ctx context.Context, c *config.Config, o Options) (*Disco, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	node, err := embedded.Open(ctx, NodeOptions(c, o.Log))
	if err != nil {
		return nil, err
	}
	d := &Disco{Node: node, close: node.Close}
	if err := d.build(ctx, c, o); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

func (d *Disco) build(ctx context.Context, c *config.Config, o Options) error {
	store, err := driver.New(d.Node, c.IPFS.RootDirectory, c.IPFS.Uploads)
	if err != nil {
		return err
	}
	g, err := global.New(global.Options{
		Node:              d.Node,
		Store:             store,
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
	Node    *embedded.Node
	Store   *driver.Driver
	Uploads string // the local directory of uploads in progress
}

// OpenOffline opens the storage c configures with no networking. It fails while Disco
// runs.
func OpenOffline(ctx context.Context, c *config.Config) (*Offline, error) {
	node, err := embedded.OpenOffline(ctx, NodeOptions(c, nil))
	if err != nil {
		return nil, err
	}
	store, err := driver.New(node, c.IPFS.RootDirectory, c.IPFS.Uploads)
	if err != nil {
		return nil, errors.Join(err, node.Close())
	}
	return &Offline{Node: node, Store: store, Uploads: c.IPFS.Uploads}, nil
}

// Close checkpoints what was changed and closes the node.
func (o *Offline) Close() error { return o.Node.Close() }
