package global

import (
	"context"
	"errors"
	"fmt"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	registrymiddleware "github.com/distribution/distribution/v3/registry/middleware/registry"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/layout"
)

// middlewareName is the registry middleware through which Global hooks into Distribution.
const middlewareName = "disco"

func init() {
	registrymiddleware.Register(middlewareName, func(ctx context.Context, ns distribution.Namespace, d storagedriver.StorageDriver, options map[string]any) (distribution.Namespace, error) {
		g, ok := options["global"].(*Global)
		if !ok {
			return nil, fmt.Errorf("%s middleware: no Global in its options", middlewareName)
		}
		n := namespace{Namespace: ns, g: g}
		if opts, ok := options["plain"].([]storage.RegistryOption); ok {
			plain, err := storage.NewRegistry(ctx, d, opts...)
			if err != nil {
				return nil, err
			}
			n.plain = plain
		}
		return n, nil
	})
}

// Middleware is the entry to add to Distribution's configuration (middleware.registry)
// for g to see the registry's repositories. plain, if not nil, are the options of the
// registry without its blob descriptor cache: Distribution's caches refuse repositories
// named by a digest's hex, which g then reaches without the cache.
func (g *Global) Middleware(plain []storage.RegistryOption) configuration.Middleware {
	opts := configuration.Parameters{"global": g}
	if plain != nil {
		opts["plain"] = plain
	}
	return configuration.Middleware{Name: middlewareName, Options: opts}
}

// namespace clones CID repositories on first use and wraps repositories.
type namespace struct {
	distribution.Namespace
	g     *Global
	plain distribution.Namespace // without a blob descriptor cache, for digest names; or nil
}

func (n namespace) Repository(ctx context.Context, name reference.Named) (distribution.Repository, error) {
	if err := n.g.ensureRepository(ctx, name.Name()); err != nil {
		// Distribution answers an error of no type it knows with an empty 500.
		var oci errcode.Error
		if !errors.As(err, &oci) {
			err = errcode.ErrorCodeUnknown.WithDetail(err.Error())
		}
		return nil, err
	}
	ns := n.Namespace
	if n.plain != nil && IsDigestName(name.Name()) {
		ns = n.plain
	}
	repo, err := ns.Repository(ctx, name)
	if err != nil {
		return nil, err
	}
	return repository{Repository: repo, g: n.g}, nil
}

// repository publishes what is tagged in it and, if named by a CID, fetches blobs it lacks.
type repository struct {
	distribution.Repository
	g *Global
}

func (r repository) Tags(ctx context.Context) distribution.TagService {
	return tags{TagService: r.Repository.Tags(ctx), repo: r.Repository, g: r.g}
}

func (r repository) Blobs(ctx context.Context) distribution.BlobStore {
	bs := r.Repository.Blobs(ctx)
	if r.g.node == nil {
		return bs // with no IPFS node, nothing comes from the network
	}
	bs = mounting{BlobStore: bs, g: r.g}
	if _, ok := ParseCIDName(r.Named().Name()); !ok {
		return bs
	}
	return blobs{BlobStore: bs, name: r.Named().Name(), g: r.g}
}

// mounting fetches, before a cross-repository mount from a CID repository, the blob to
// mount if it is not local yet: Distribution mounts only what it holds, and the client
// would upload the whole blob again.
type mounting struct {
	distribution.BlobStore
	g *Global
}

func (m mounting) Create(ctx context.Context, options ...distribution.BlobCreateOption) (distribution.BlobWriter, error) {
	var opts distribution.CreateOptions
	for _, o := range options {
		o.Apply(&opts) // errors are the inner Create's to report
	}
	if from := opts.Mount.From; opts.Mount.ShouldMount && from != nil {
		if _, isCID := ParseCIDName(from.Name()); isCID {
			if err := m.g.ensureRepository(ctx, from.Name()); err == nil {
				// A failure leaves the mount to fail: the client uploads the blob.
				blobs{name: from.Name(), g: m.g}.ensure(ctx, from.Digest())
			}
		}
	}
	return m.BlobStore.Create(ctx, options...)
}

// tags publishes a manifest before tagging it: a client is never told that a tagged push
// succeeded unless the image can be pulled by its CID.
type tags struct {
	distribution.TagService
	repo distribution.Repository
	g    *Global
}

func (t tags) Tag(ctx context.Context, tag string, desc v1.Descriptor) error {
	if _, err := t.g.Publish(ctx, t.repo.Named().Name(), desc.Digest); err != nil {
		return fmt.Errorf("file %s under its digest and CID: %w", desc.Digest, err)
	}
	t.g.metrics.published.Inc()
	if t.g.opts.HashesOnly {
		name := t.repo.Named().Name()
		if err := t.g.store.Delete(ctx, layout.Repository(name)); err != nil {
			return fmt.Errorf("remove %s in hashes-only mode: %w", name, err)
		}
		return nil
	}
	return t.TagService.Tag(ctx, tag, desc)
}

// blobMap returns the digest-to-CID map of the CID repository name, from its disco.json.
func (g *Global) blobMap(ctx context.Context, name string) (map[digest.Digest]cid.Cid, error) {
	if m, ok := g.maps.Get(name); ok {
		return m, nil
	}
	b, err := driver.ReadFile(ctx, g.store, layout.Repository(name)+"/"+discoJSONName, maxDiscoJSON)
	if err != nil {
		return nil, err
	}
	m, err := parseDiscoJSON(b)
	if err != nil {
		return nil, err
	}
	g.maps.Add(name, m)
	return m, nil
}

// Remove lets Distribution delete tags and repositories through the wrapper.
func (n namespace) Remove(ctx context.Context, name reference.Named) error {
	r, ok := n.Namespace.(distribution.RepositoryRemover)
	if !ok {
		return distribution.ErrUnsupported
	}
	return r.Remove(ctx, name)
}
