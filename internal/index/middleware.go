package index

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	registrymiddleware "github.com/distribution/distribution/v3/registry/middleware/registry"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/discoregistry/disco/internal/global"
)

// middlewareName is the registry middleware through which the index sees changes.
const middlewareName = "disco-index"

func init() {
	registrymiddleware.Register(middlewareName, func(ctx context.Context, ns distribution.Namespace, driver storagedriver.StorageDriver, options map[string]any) (distribution.Namespace, error) {
		ix, ok := options["index"].(*Index)
		if !ok {
			return nil, fmt.Errorf("%s middleware: no Index in its options", middlewareName)
		}
		return ix.Wrap(ctx, ns, driver)
	})
}

// Middleware is the entry to add to Distribution's configuration (middleware.registry),
// after every other registry middleware, for the index to see what changes.
func (ix *Index) Middleware() configuration.Middleware {
	return configuration.Middleware{Name: middlewareName, Options: configuration.Parameters{"index": ix}}
}

// Namespace returns the registry as Distribution's app sees it, through every registry
// middleware: a read of a repository named by a CID clones it, as a pull does. It is nil
// until the app is built.
func (ix *Index) Namespace() distribution.Namespace { return ix.ns }

// Wrap is what the registry middleware does: it returns ns, a namespace over driver, for
// the index to see its changes. Tests without Distribution's app call it directly.
func (ix *Index) Wrap(ctx context.Context, ns distribution.Namespace, driver storagedriver.StorageDriver) (distribution.Namespace, error) {
	if ix.ns != nil {
		return nil, errors.New("index: already serves a registry")
	}
	plain, err := storage.NewRegistry(ctx, driver)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	ix.live = source{reg: plain, driver: driver}
	ix.ns = namespace{Namespace: ns, ix: ix}
	return ix.ns, nil
}

// namespace sees clones and repository removals.
type namespace struct {
	distribution.Namespace
	ix *Index
}

func (n namespace) Repository(ctx context.Context, name reference.Named) (distribution.Repository, error) {
	r, err := n.Namespace.Repository(ctx, name)
	if err != nil {
		return nil, err
	}
	// A CID repository is there once global is done with it: cloned, if it was not.
	if _, isCID := global.ParseCIDName(name.Name()); isCID && !n.ix.has(name.Name()) {
		n.ix.q.add(name.Name())
	}
	return repository{Repository: r, ix: n.ix}, nil
}

func (n namespace) Remove(ctx context.Context, name reference.Named) error {
	r, ok := n.Namespace.(distribution.RepositoryRemover)
	if !ok {
		return distribution.ErrUnsupported
	}
	defer n.ix.q.add(name.Name())
	return r.Remove(ctx, name)
}

type repository struct {
	distribution.Repository
	ix *Index
}

func (r repository) Tags(ctx context.Context) distribution.TagService {
	return tags{TagService: r.Repository.Tags(ctx), name: r.Named().Name(), ix: r.ix}
}

func (r repository) Manifests(ctx context.Context, options ...distribution.ManifestServiceOption) (distribution.ManifestService, error) {
	ms, err := r.Repository.Manifests(ctx, options...)
	if err != nil {
		return nil, err
	}
	return manifests{ManifestService: ms, name: r.Named().Name(), ix: r.ix}, nil
}

// tags sees tags pushed and removed.
type tags struct {
	distribution.TagService
	name string
	ix   *Index
}

func (t tags) Tag(ctx context.Context, tag string, desc v1.Descriptor) error {
	if err := t.TagService.Tag(ctx, tag, desc); err != nil {
		return err
	}
	t.ix.pushed(t.name, desc.Digest)
	return nil
}

func (t tags) Untag(ctx context.Context, tag string) error {
	defer t.ix.q.add(t.name)
	return t.TagService.Untag(ctx, tag)
}

// manifests sees manifests deleted.
type manifests struct {
	distribution.ManifestService
	name string
	ix   *Index
}

func (m manifests) Delete(ctx context.Context, d digest.Digest) error {
	defer m.ix.q.add(m.name)
	return m.ManifestService.Delete(ctx, d)
}

// pushed notes that a tag of the repository name now points at d. With global
// addressing, d is filed under its digest and CID too (or, in hashes-only mode, only
// there): the digest repository is read again, and through it the CID repository.
func (ix *Index) pushed(name string, d digest.Digest) {
	now := time.Now()
	for _, n := range []string{name, d.Encoded()} {
		if err := ix.pushes.record(n, now); err != nil {
			ix.log.Warn("index: record push time", "repository", n, "err", err)
		}
		ix.q.add(n)
	}
}

func (ix *Index) has(name string) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	_, ok := ix.repos[name]
	return ok
}
