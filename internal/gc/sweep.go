// Package gc removes from a registry what nothing names any more. Sweep is Distribution's
// mark and sweep, made right for content that manifests name by another digest than the
// sha256 it is stored under; Remove takes an image out for good, with the digest and CID
// repositories that file it. What they leave behind in IPFS, the node's own garbage
// collection frees.
package gc

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/layout"
)

// Stats are what a sweep found unreferenced, and removed unless it was a dry run.
type Stats struct {
	Blobs int   // blobs no manifest names
	Bytes int64 // their size
	Links int   // layer links to them in repositories
}

// Sweep marks every blob a manifest of any repository names, those manifests included,
// and removes the others, with the layer links that name them. Every manifest any
// repository holds counts, tagged or not: content that a tag, a digest or a CID
// repository names is never removed. With dryRun, it removes nothing. found is called for
// each blob it finds unreferenced.
//
// Distribution stores a blob under its sha256 digest and links a digest of another
// algorithm to it: a manifest that names a blob by sha512 keeps its sha256 copy.
func Sweep(ctx context.Context, store driver.Store, dryRun bool, found func(d digest.Digest, size int64)) (Stats, error) {
	var stats Stats
	reg, err := storage.NewRegistry(ctx, store)
	if err != nil {
		return stats, err
	}
	m := &marker{ctx: ctx, store: store, marked: map[digest.Digest]bool{}}
	unlinked := map[string][]digest.Digest{}
	err = reg.(distribution.RepositoryEnumerator).Enumerate(ctx, func(name string) error {
		repo, err := repository(ctx, reg, name)
		if err != nil {
			return err
		}
		if err := m.markRepository(repo); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return repo.Blobs(ctx).(distribution.BlobEnumerator).Enumerate(ctx, func(d digest.Digest) error {
			unlinked[name] = append(unlinked[name], d)
			return nil
		})
	})
	if err != nil && !driver.IsNotFound(err) { // no repositories at all
		return stats, fmt.Errorf("mark: %w", err)
	}
	err = reg.Blobs().Enumerate(ctx, func(d digest.Digest) error {
		if m.marked[d] {
			return nil
		}
		fi, err := store.Stat(ctx, layout.Blob(d))
		if err != nil {
			return err
		}
		stats.Blobs++
		stats.Bytes += fi.Size()
		if found != nil {
			found(d, fi.Size())
		}
		if dryRun {
			return nil
		}
		return store.Delete(ctx, path.Dir(layout.Blob(d)))
	})
	if err != nil && !driver.IsNotFound(err) { // no blobs at all
		return stats, fmt.Errorf("sweep: %w", err)
	}
	for name, ds := range unlinked {
		if global.UnderGlobalName(name) {
			continue // what a digest or CID names never changes
		}
		for _, d := range ds {
			if m.marked[d] || m.marked[m.alias(name, d)] {
				continue
			}
			stats.Links++
			if dryRun {
				continue
			}
			if err := store.Delete(ctx, path.Dir(path.Join(layout.Repository(name), layout.LayerLink(d)))); err != nil && !driver.IsNotFound(err) {
				return stats, err
			}
		}
	}
	return stats, nil
}

func repository(ctx context.Context, reg distribution.Namespace, name string) (distribution.Repository, error) {
	named, err := reference.WithName(name)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", name, err)
	}
	return reg.Repository(ctx, named)
}

// marker marks what manifests name.
type marker struct {
	ctx    context.Context
	store  driver.Store
	marked map[digest.Digest]bool
}

// markRepository marks every manifest of repo and what it names.
func (m *marker) markRepository(repo distribution.Repository) error {
	ms, err := repo.Manifests(m.ctx)
	if err != nil {
		return err
	}
	name := repo.Named().Name()
	err = ms.(distribution.ManifestEnumerator).Enumerate(m.ctx, func(d digest.Digest) error {
		return m.markManifest(ms, name, d)
	})
	if driver.IsNotFound(err) { // a repository without manifests
		return nil
	}
	return err
}

func (m *marker) markManifest(ms distribution.ManifestService, name string, d digest.Digest) error {
	m.mark(name, d)
	manifest, err := ms.Get(m.ctx, d)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	for _, ref := range manifest.References() {
		if m.marked[ref.Digest] {
			continue
		}
		m.mark(name, ref.Digest)
		if ok, _ := ms.Exists(m.ctx, ref.Digest); ok { // a manifest of an index
			if err := m.markManifest(ms, name, ref.Digest); err != nil {
				return err
			}
		}
	}
	return nil
}

// mark marks d and, for a digest of another algorithm, the sha256 digest the repository
// name links it to.
func (m *marker) mark(name string, d digest.Digest) {
	m.marked[d] = true
	if s := m.alias(name, d); s != "" {
		m.marked[s] = true
	}
}

// alias returns the sha256 digest of the content the repository name links as d, when d
// is of another algorithm, or "".
func (m *marker) alias(name string, d digest.Digest) digest.Digest {
	if d.Algorithm() == digest.Canonical {
		return ""
	}
	for _, link := range []func(digest.Digest) string{layout.LayerLink, layout.RevisionLink} {
		b, err := driver.ReadFile(m.ctx, m.store, path.Join(layout.Repository(name), link(d)), 256)
		if err != nil {
			continue
		}
		if s, err := digest.Parse(strings.TrimSpace(string(b))); err == nil && s.Algorithm() == digest.Canonical {
			return s
		}
	}
	return ""
}
