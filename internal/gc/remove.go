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

// Resolve returns the manifest digest ref names in the registry: name:tag, name@digest,
// a digest repository (its hex) or a CID repository.
func Resolve(ctx context.Context, store driver.Store, ref string) (digest.Digest, error) {
	if global.IsGlobalName(ref) {
		ref += ":latest"
	}
	r, err := reference.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("%q: %w", ref, err)
	}
	if d, ok := r.(reference.Digested); ok {
		return d.Digest(), nil
	}
	t, ok := r.(reference.NamedTagged)
	if !ok {
		return "", fmt.Errorf("%q: want name:tag, name@digest, a digest or a CID", ref)
	}
	b, err := driver.ReadFile(ctx, store, path.Join(layout.Repository(t.Name()), layout.TagLink(t.Tag())), 256)
	if driver.IsNotFound(err) {
		return "", fmt.Errorf("%s: no such image", ref)
	}
	if err != nil {
		return "", err
	}
	return digest.Parse(strings.TrimSpace(string(b)))
}

// NotHeldError is what Remove returns when no repository holds any of the manifests.
type NotHeldError struct{ Digests []digest.Digest }

func (e *NotHeldError) Error() string {
	var ds []string
	for _, d := range e.Digests {
		ds = append(ds, d.String())
	}
	return "no repository holds " + strings.Join(ds, ", ")
}

// Removal is one thing Remove took out of a repository: the whole repository, one of
// its tags, or the manifest with the index of its referrers.
type Removal struct {
	Repository string
	Digest     digest.Digest // the manifest removed
	Whole      bool          // the repository went whole
	Tag        string        // the tag removed, if it is one
}

func (r Removal) String() string {
	switch {
	case r.Whole:
		return "repository " + r.Repository
	case r.Tag != "":
		return fmt.Sprintf("tag %s:%s", r.Repository, r.Tag)
	}
	return fmt.Sprintf("manifest %s@%s", r.Repository, r.Digest)
}

// Remove takes the manifests ds out of every repository, in one walk of the registry: a
// repository named by a digest, or by a CID, that files one of them goes whole; any other
// loses the manifest, the tags that point at it and the index of its referrers. It
// returns what it removed. Sweep then removes the blobs nothing names any more.
//
// Remove writes through store, not through Distribution's app: a running Disco's web page
// learns of the removals only if told (index.Refresh).
func Remove(ctx context.Context, store driver.Store, ds ...digest.Digest) ([]Removal, error) {
	reg, err := storage.NewRegistry(ctx, store)
	if err != nil {
		return nil, err
	}
	var removed []Removal
	var doomed []string // removed once the walk is done
	err = reg.(distribution.RepositoryEnumerator).Enumerate(ctx, func(name string) error {
		repo := layout.Repository(name)
		for _, d := range ds {
			if ok, err := driver.Exists(ctx, store, path.Join(repo, layout.RevisionLink(d))); err != nil || !ok {
				if err != nil {
					return err
				}
				continue
			}
			if global.IsGlobalName(name) {
				doomed = append(doomed, repo)
				removed = append(removed, Removal{Repository: name, Digest: d, Whole: true})
				return nil
			}
			tags, err := tagsOf(ctx, store, name, d)
			if err != nil {
				return err
			}
			for _, tag := range tags {
				doomed = append(doomed, path.Join(repo, "_manifests", "tags", tag))
				removed = append(removed, Removal{Repository: name, Digest: d, Tag: tag})
			}
			doomed = append(doomed, path.Dir(path.Join(repo, layout.RevisionLink(d))), path.Join(repo, layout.Referrers(d)))
			removed = append(removed, Removal{Repository: name, Digest: d})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, p := range doomed {
		if err := store.Delete(ctx, p); err != nil && !driver.IsNotFound(err) {
			return removed, err
		}
	}
	if len(removed) == 0 {
		return nil, &NotHeldError{Digests: ds}
	}
	return removed, nil
}

// tagsOf returns the tags of the repository name that point at d.
func tagsOf(ctx context.Context, store driver.Store, name string, d digest.Digest) ([]string, error) {
	dir := path.Join(layout.Repository(name), "_manifests", "tags")
	entries, err := store.List(ctx, dir)
	if driver.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, e := range entries {
		tag := path.Base(e)
		b, err := driver.ReadFile(ctx, store, path.Join(layout.Repository(name), layout.TagLink(tag)), 256)
		if err == nil && strings.TrimSpace(string(b)) == d.String() {
			tags = append(tags, tag)
		}
	}
	return tags, nil
}
