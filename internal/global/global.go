package global

import (
	"context"
	"log/slog"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/layout"
)

// Defaults of the bounds on what is taken from the network.
const (
	// DefaultCloneTimeout bounds how long a pull waits for the network to answer for a CID.
	DefaultCloneTimeout = 30 * time.Second
	// DefaultCloneMaxBlob bounds the size of one blob of a cloned image.
	DefaultCloneMaxBlob = 16 << 30
	// DefaultCloneMaxSize bounds the size of a cloned image, all its blobs together.
	DefaultCloneMaxSize = 64 << 30
)

// MissingFor is how long a CID that nobody answered for is answered 404 at once.
const MissingFor = time.Minute

// Options configure global addressing.
type Options struct {
	// Node fetches and adds content in IPFS.
	Node ipfs.Node
	// Store is the registry's storage, which Global reads and writes through.
	Store driver.Store
	// HashesOnly removes a pushed name once its digest and CID repositories exist, as the
	// original Disco did.
	HashesOnly bool
	// CatalogPushedOnly leaves the digest and CID names of images pushed here out of the
	// catalog (see namespace.Repositories).
	CatalogPushedOnly bool
	// NoClone serves only what the local node holds: no pulls by CID from the network.
	NoClone bool
	// CloneTimeout bounds the wait for the network to answer for a CID.
	CloneTimeout time.Duration
	// CloneMaxBlob and CloneMaxSize bound, in bytes, a blob of a cloned image and the
	// whole image: larger ones are refused, whatever their manifests and DAGs say.
	CloneMaxBlob, CloneMaxSize int64
	Log                        *slog.Logger
	// Metrics registers the clone metrics; nil registers none.
	Metrics prometheus.Registerer
}

// Global publishes pushed images under their digest and CID, and clones CID repositories
// from the network on pull.
type Global struct {
	node    ipfs.Node
	store   driver.Store
	opts    Options
	log     *slog.Logger
	metrics *metrics

	publishing keyLocks // by manifest digest
	clones     flights  // by repository name
	blobs      flights  // by digest and CID: a liar's CID for a digest never holds up another's
	// maps caches the disco.json of CID repositories: digest to CID, by repository name.
	maps *mapCache
	// refused remembers CID repositories found to lie, with the reason.
	refused *lru.Cache[string, error]
	// missing remembers, for a while, CIDs nobody answered for: a client asks for a
	// repository several times in one pull (HEAD, then GET), and each would wait.
	missing *expirable.LRU[string, time.Time]
}

// New returns a Global.
func New(o Options) (*Global, error) {
	if o.CloneTimeout <= 0 {
		o.CloneTimeout = DefaultCloneTimeout
	}
	if o.CloneMaxBlob <= 0 {
		o.CloneMaxBlob = DefaultCloneMaxBlob
	}
	if o.CloneMaxSize <= 0 {
		o.CloneMaxSize = DefaultCloneMaxSize
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, err
	}
	maps, err := newMapCache(maxCachedBlobs)
	if err != nil {
		return nil, err
	}
	refused, err := lru.New[string, error](1024)
	if err != nil {
		return nil, err
	}
	g := &Global{
		refused: refused,
		missing: expirable.NewLRU[string, time.Time](1024, nil, MissingFor),
		node:    o.Node,
		store:   o.Store,
		opts:    o,
		log:     o.Log,
		metrics: m,
		maps:    maps,
	}
	return g, nil
}

// nodeFor returns the node that holds the driver path p: content to link there is
// fetched there.
func (g *Global) nodeFor(p string) ipfs.Node {
	if pl, ok := g.store.(interface{ NodeFor(string) ipfs.Node }); ok {
		if n := pl.NodeFor(p); n != nil {
			return n
		}
	}
	return g.node
}

// readBlob reads a manifest-sized blob from the registry.
func (g *Global) readBlob(ctx context.Context, d digest.Digest) ([]byte, error) {
	return driver.ReadFile(ctx, g.store, layout.Blob(d), maxManifestSize)
}

// exists reports whether the registry holds something at p.
func (g *Global) exists(ctx context.Context, p string) (bool, error) {
	return driver.Exists(ctx, g.store, p)
}

// place links c at the repository name, unless it is there already.
func (g *Global) place(ctx context.Context, name string, c cid.Cid) (created bool, err error) {
	p := layout.Repository(name)
	if have, err := g.store.CID(ctx, p); err == nil && have == c {
		return false, nil
	}
	return true, g.store.Link(ctx, p, c)
}
