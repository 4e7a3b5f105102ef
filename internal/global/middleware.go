package global

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	registrymiddleware "github.com/distribution/distribution/v3/registry/middleware/registry"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/discoregistry/disco/internal/ipfs"
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
		return fmt.Errorf("file %s under its digest and CID: %w", desc.Digest, err)
	}
	t.g.metrics.published.Inc()
	if t.g.opts.HashesOnly {
		name := t.repo.Named().Name()
		if err := t.g.node.Remove(ctx, t.g.layout.Repository(name)); err != nil {
			return fmt.Errorf("remove %s in hashes-only mode: %w", name, err)
		}
		return nil
	}
	return t.TagService.Tag(ctx, tag, desc)
}

// blobs fetches, from the network, the blobs of a CID repository that are not local yet.
type blobs struct {
	distribution.BlobStore
	name string
	g    *Global
}

func (b blobs) ensure(ctx context.Context, d digest.Digest) error {
	m, err := b.g.blobMap(ctx, b.name)
	if err != nil {
		return err
	}
	c, ok := m[d]
	if !ok {
		return nil // not this repository's: Distribution answers
	}
	err = b.g.ensureBlob(ctx, d, c)
	if err == nil && d.Algorithm() != digest.Canonical {
		// Distribution serves d from the sha256 digest it is stored under.
		for stored, sc := range m {
			if sc == c && stored.Algorithm() == digest.Canonical && err == nil {
				err = b.g.ensureBlob(ctx, stored, c)
			}
		}
	}
	if err == nil {
		return nil
	}
	b.g.blobFailed(ctx, b.name, d, err)
	var mismatch *MismatchError
	if errors.As(err, &mismatch) {
		return errcode.ErrorCodeBlobUnknown.WithDetail(err.Error())
	}
	return errcode.ErrorCodeBlobUnknown.WithDetail(fmt.Sprintf("could not fetch %s from IPFS: %v", d, err))
}

func (b blobs) Stat(ctx context.Context, d digest.Digest) (v1.Descriptor, error) {
	if err := b.ensure(ctx, d); err != nil {
		return v1.Descriptor{}, err
	}
	return b.BlobStore.Stat(ctx, d)
}

func (b blobs) Get(ctx context.Context, d digest.Digest) ([]byte, error) {
	if err := b.ensure(ctx, d); err != nil {
		return nil, err
	}
	return b.BlobStore.Get(ctx, d)
}

func (b blobs) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error) {
	if err := b.ensure(ctx, d); err != nil {
		return nil, err
	}
	return b.BlobStore.Open(ctx, d)
}

func (b blobs) ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, d digest.Digest) error {
	if err := b.ensure(ctx, d); err != nil {
		return err
	}
	return b.BlobStore.ServeBlob(ctx, w, r, d)
}

// blobMap returns the digest-to-CID map of the CID repository name, from its disco.json.
func (g *Global) blobMap(ctx context.Context, name string) (map[digest.Digest]cid.Cid, error) {
	if m, ok := g.maps.Get(name); ok {
		return m, nil
	}
	b, err := ipfs.ReadFile(ctx, g.node, g.layout.Repository(name)+"/"+discoJSONName, maxDiscoJSON)
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
