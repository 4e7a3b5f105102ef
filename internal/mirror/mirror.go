// Package mirror makes Disco a pull-through mirror of another registry, configured with
// Distribution's proxy section. An image pulled through it is fetched once, kept in IPFS
// and published under its digest and CID like a pushed one; Discos that mirror the same
// upstream get from each other, over IPFS, what one of them has mirrored.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	registrymiddleware "github.com/distribution/distribution/v3/registry/middleware/registry"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/global"
)

// Defaults of the bounds on the upstream and the peers.
const (
	// DefaultUpstreamTimeout bounds how long the upstream may take to answer, or stay
	// silent while it sends a blob.
	DefaultUpstreamTimeout = 15 * time.Second
	// DefaultPeerTimeout bounds how long peers may take to say whether they hold
	// something, and the peer fetching something for this mirror to report progress.
	DefaultPeerTimeout = 3 * time.Second
)

// Options configure a Mirror.
type Options struct {
	// RemoteURL is the upstream registry; Username and Password, if set, its credentials.
	RemoteURL, Username, Password string
	// UpstreamTimeout and PeerTimeout bound the waits on the upstream and on peers.
	UpstreamTimeout, PeerTimeout time.Duration
	// Global publishes mirrored images and fetches from IPFS what peers hold.
	Global *global.Global
	// Store is the registry's storage.
	Store driver.Store
	// Host, if set, is the IPFS node's libp2p host, over which the mirror asks its peers
	// for content. Without one, everything comes from the upstream.
	Host host.Host
	// Trusted are the peers that may have this mirror fetch from the upstream for them.
	Trusted []peer.ID
	// TTL is how long a mirrored manifest is kept after it was fetched; 0 keeps it.
	TTL time.Duration
	// StateDir is the directory the fetch times of manifests are kept in, for their TTL;
	// empty keeps them in memory only.
	StateDir string
	// Index, if set, is told of the repositories the mirror changes: the mirror writes
	// below the registry middleware through which the index sees other changes.
	Index interface{ Refresh(name string) }
	Log   *slog.Logger
	// Metrics registers the mirror's metrics; nil registers none.
	Metrics prometheus.Registerer
}

// Mirror serves the images of an upstream registry, pulling them through on first use.
type Mirror struct {
	up      *upstream
	g       *global.Global
	store   driver.Store
	peers   *peers  // nil: no peers to ask
	expiry  *expiry // nil: images are kept
	index   interface{ Refresh(name string) }
	log     *slog.Logger
	metrics *metrics

	// local is the registry below the mirror, set when Distribution's app is built.
	local distribution.Namespace

	fetches flights // by digest: one fetch of each at a time, whatever asks for it
	// sizes are the blob sizes the manifests served say, so that a blob can be described
	// before it is fetched.
	sizes *lru.Cache[digest.Digest, int64]

	mu sync.Mutex
	// completing and published hold the images (name@digest) being completed, and those
	// published since the start.
	completing, published map[string]bool
	// parents holds, for a manifest, the indexes of its repository that list it.
	parents map[string][]digest.Digest

	ctx    context.Context // of background work, cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Mirror. Close stops its background work.
func New(o Options) (*Mirror, error) {
	if o.UpstreamTimeout <= 0 {
		o.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if o.PeerTimeout <= 0 {
		o.PeerTimeout = DefaultPeerTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	up, err := newUpstream(o.RemoteURL, o.Username, o.Password, o.UpstreamTimeout)
	if err != nil {
		return nil, err
	}
	met, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, err
	}
	sizes, err := lru.New[digest.Digest, int64](1 << 16)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mirror{
		up: up, g: o.Global, store: o.Store, index: o.Index, log: o.Log, metrics: met, sizes: sizes,
		completing: map[string]bool{}, published: map[string]bool{}, parents: map[string][]digest.Digest{},
		ctx: ctx, cancel: cancel,
	}
	if o.TTL > 0 {
		if m.expiry, err = openExpiry(o.StateDir, o.TTL, o.Log); err != nil {
			cancel()
			return nil, err
		}
	}
	if o.Host != nil {
		m.peers = newPeers(m, o.Host, o.RemoteURL, o.Trusted, o.PeerTimeout)
	}
	return m, nil
}

// Close stops serving peers and waits for the background work to stop.
func (m *Mirror) Close() error {
	m.cancel()
	if m.peers != nil {
		m.peers.close()
	}
	m.wg.Wait()
	if m.expiry != nil {
		return m.expiry.close()
	}
	return nil
}

// serve starts the work of a mirror that serves the registry ns: expiry.
func (m *Mirror) serve(ns distribution.Namespace) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.local != nil {
		return errors.New("mirror: already serves a registry")
	}
	m.local = ns
	if m.expiry != nil && m.ctx.Err() == nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.expire(m.ctx)
		}()
	}
	return nil
}

// changed tells the index, if any, that the mirror changed the repository name.
func (m *Mirror) changed(name string) {
	if m.index != nil {
		m.index.Refresh(name)
	}
}

// middlewareName is the registry middleware through which the mirror serves repositories.
const middlewareName = "disco-mirror"

func init() {
	registrymiddleware.Register(middlewareName, func(ctx context.Context, ns distribution.Namespace, _ storagedriver.StorageDriver, options map[string]any) (distribution.Namespace, error) {
		m, ok := options["mirror"].(*Mirror)
		if !ok {
			return nil, fmt.Errorf("%s middleware: no Mirror in its options", middlewareName)
		}
		if err := m.serve(ns); err != nil {
			return nil, err
		}
		return namespace{Namespace: ns, m: m}, nil
	})
}

// Middleware is the entry to add to Distribution's configuration (middleware.registry),
// before global's, for the mirror to serve every repository but those global names.
func (m *Mirror) Middleware() configuration.Middleware {
	return configuration.Middleware{Name: middlewareName, Options: configuration.Parameters{"mirror": m}}
}

// namespace serves repositories of the upstream through the mirror; repositories named
// by a digest or a CID are Disco's own, and served as they are.
type namespace struct {
	distribution.Namespace
	m *Mirror
}

func (n namespace) Repository(ctx context.Context, name reference.Named) (distribution.Repository, error) {
	repo, err := n.Namespace.Repository(ctx, name)
	if err != nil || global.UnderGlobalName(name.Name()) {
		return repo, err
	}
	return repository{Repository: repo, m: n.m}, nil
}

// Remove is refused: a mirror's repositories are the upstream's.
func (n namespace) Remove(context.Context, reference.Named) error { return distribution.ErrUnsupported }

// repository is a repository of the upstream, pulled through.
type repository struct {
	distribution.Repository // the local one
	m                       *Mirror
}

// repository returns the local repository name, below the mirror.
func (m *Mirror) repository(ctx context.Context, name string) (distribution.Repository, error) {
	m.mu.Lock()
	local := m.local
	m.mu.Unlock()
	if local == nil {
		return nil, errors.New("mirror: not serving a registry yet")
	}
	named, err := reference.WithName(name)
	if err != nil {
		return nil, err
	}
	return local.Repository(ctx, named)
}

// ociError is what a client is told of err; unknown is the error for content the upstream
// does not have.
func ociError(err error, unknown errcode.ErrorCode) error {
	var oci errcode.Error
	if errors.As(err, &oci) {
		return oci
	}
	var ue *UpstreamError
	switch {
	case errors.As(err, &ue) && ue.Status == 404:
		return unknown.WithDetail(ue.Error())
	case errors.As(err, &ue) && (ue.Status == 401 || ue.Status == 403):
		return errcode.ErrorCodeDenied.WithDetail("the upstream refused this mirror: " + ue.Error())
	case errors.As(err, &ue) && ue.Status == 429:
		return errcode.ErrorCodeTooManyRequests.WithDetail(ue.Error())
	case errors.As(err, &ue):
		return errcode.ErrorCodeUnavailable.WithDetail(ue.Error())
	case errors.Is(err, distribution.ErrUnsupported):
		return err
	}
	return errcode.ErrorCodeUnknown.WithDetail(err.Error())
}
