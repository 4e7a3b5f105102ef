// Package indextest runs an Index over an in-memory Distribution registry, with nothing of
// IPFS, and pushes images to it through Distribution's API, as its HTTP handlers do.
package indextest

import (
	"context"
	"testing"

	"github.com/distribution/distribution/v3"
	_ "github.com/distribution/distribution/v3/manifest/ocischema" // the manifest types pushed
	_ "github.com/distribution/distribution/v3/manifest/schema2"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	ggcr "github.com/google/go-containerregistry/pkg/v1"

	"github.com/discoregistry/disco/internal/index"
)

// Registry is an in-memory registry seen by an Index.
type Registry struct {
	Index  *index.Index
	Driver *inmemory.Driver
	// NS is the registry's namespace through the index's middleware.
	NS distribution.Namespace
}

// New starts an Index over a new in-memory registry, or over driver if it is not nil. The
// index runs until the test ends.
func New(tb testing.TB, o index.Options, driver *inmemory.Driver) *Registry {
	tb.Helper()
	if driver == nil {
		driver = inmemory.New()
	}
	ctx := context.Background()
	ns, err := storage.NewRegistry(ctx, driver, storage.EnableDelete)
	if err != nil {
		tb.Fatal(err)
	}
	ix := index.New(o)
	wrapped, err := ix.Wrap(ctx, ns, driver)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("index: %v", err)
		}
	})
	return &Registry{Index: ix, Driver: driver, NS: wrapped}
}

// Sync waits for the index to take in every change made so far.
func (r *Registry) Sync(tb testing.TB) {
	tb.Helper()
	if err := r.Index.Sync(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

// Repo returns the repository name.
func (r *Registry) Repo(tb testing.TB, name string) distribution.Repository {
	tb.Helper()
	named, err := reference.WithName(name)
	if err != nil {
		tb.Fatal(err)
	}
	repo, err := r.NS.Repository(context.Background(), named)
	if err != nil {
		tb.Fatal(err)
	}
	return repo
}

// Push pushes img to name and tags it tag, unless tag is empty, and returns its digest.
func (r *Registry) Push(tb testing.TB, name, tag string, img ggcr.Image) digest.Digest {
	tb.Helper()
	ctx := context.Background()
	repo := r.Repo(tb, name)
	layers, err := img.Layers()
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			tb.Fatal(err)
		}
		w, err := repo.Blobs(ctx).Create(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := w.ReadFrom(rc); err != nil {
			tb.Fatal(err)
		}
		rc.Close()
		h, _ := l.Digest()
		if _, err := w.Commit(ctx, v1.Descriptor{Digest: digest.Digest(h.String())}); err != nil {
			tb.Fatal(err)
		}
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := repo.Blobs(ctx).Put(ctx, "application/octet-stream", cfg); err != nil {
		tb.Fatal(err)
	}
	return r.PutManifest(tb, name, tag, img)
}

// PushIndex pushes the images of idx, untagged, then idx, tagged tag.
func (r *Registry) PushIndex(tb testing.TB, name, tag string, idx ggcr.ImageIndex) digest.Digest {
	tb.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		tb.Fatal(err)
	}
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			tb.Fatal(err)
		}
		r.Push(tb, name, "", img)
	}
	return r.PutManifest(tb, name, tag, idx)
}

// PutManifest puts the manifest of m, whose blobs are there, and tags it.
func (r *Registry) PutManifest(tb testing.TB, name, tag string, m partial.Describable) digest.Digest {
	tb.Helper()
	ctx := context.Background()
	raw, err := m.(interface{ RawManifest() ([]byte, error) }).RawManifest()
	if err != nil {
		tb.Fatal(err)
	}
	mt, err := m.MediaType()
	if err != nil {
		tb.Fatal(err)
	}
	man, desc, err := distribution.UnmarshalManifest(string(mt), raw)
	if err != nil {
		tb.Fatal(err)
	}
	repo := r.Repo(tb, name)
	ms, err := repo.Manifests(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := ms.Put(ctx, man); err != nil {
		tb.Fatalf("put manifest %s in %s: %v", desc.Digest, name, err)
	}
	if tag != "" {
		r.Tag(tb, name, tag, desc.Digest)
	}
	return desc.Digest
}

// Tag tags the manifest d of the repository name.
func (r *Registry) Tag(tb testing.TB, name, tag string, d digest.Digest) {
	tb.Helper()
	if err := r.Repo(tb, name).Tags(context.Background()).Tag(context.Background(), tag, v1.Descriptor{Digest: d}); err != nil {
		tb.Fatalf("tag %s:%s: %v", name, tag, err)
	}
}
