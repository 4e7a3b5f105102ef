package global

import (
	"context"
	"errors"
	"fmt"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	registrymiddleware "github.com/distribution/distribution/v3/registry/middleware/registry"
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
	registrymiddleware.Register(middlewareName, func(_ context.Context, ns distribution.Namespace, _ storagedriver.StorageDriver, options map[string]any) (distribution.Namespace, error) {
		g, ok := options["global"].(*Global)
		if !ok {
			return nil, fmt.Errorf("%s middleware: no Global in its options", middlewareName)
		}
		return namespace{Namespace: ns, g: g}, nil
	})
}

// Middleware is the entry to add to Distribution's configuration (middleware.registry)
// for g to see the registry's repositories.
func (g *Global) Middleware() configuration.Middleware {
	return configuration.Middleware{Name: middlewareName, Options: configuration.Parameters{"global": g}}
}

// namespace clones CID repositories on first use and wraps repositories.
type namespace struct {
	distribution.Namespace
	g *Global
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
	repo, err := n.Namespace.Repository(ctx, name)
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
	if _, ok := ParseCIDName(r.Named().Name()); !ok {
		return bs
	}
	return blobs{BlobStore: bs, name: r.Named().Name(), g: r.g}
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
		return driver.ReportFull(ctx, fmt.Errorf("file %s under its digest and CID: %w", desc.Digest, err))
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
