// Package index keeps in memory what the web page looks up across the whole registry:
// the repositories with their tags and last push, the manifests they tag, and which
// manifests use a digest. Distribution has no such lookups short of walking its storage.
//
// The registry's files are the source of truth; the index is derived from them. It is
// built from them at start-up, in the background (from a snapshot, when it is given a
// way to take one), and kept up to date by a registry middleware that sees tags,
// untags, deletes and clones. A change is applied a moment after the request that made
// it (Sync waits for that). Until the first build is done (Status.Ready), or once the
// memory bound is reached (Status.Truncated), the index may lack repositories or
// manifests: a caller that needs an exact answer, such as a future _catalog or tags/list
// answered from here, reads the registry instead. What the index holds is never older
// than the last change it has applied; a write that bypasses Distribution (global
// removing a CID repository it refused) is caught up by Refresh, which callers use when
// the registry tells them something the index did not know.
//
// Nothing of the index is persisted but push times, the one thing the registry's files
// do not record (MFS keeps no times; see pushes.go). Rebuilding it costs a read of the
// registry, and a persisted copy would have to be checked against the registry anyway,
// which also changes by other ways (disco gc, a restored node).
package index

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/global"
)

// DefaultMaxEntries bounds the index: repositories, tags, manifests and the blobs they
// list, each counted once. An entry takes about 150 bytes (ui's BenchmarkPages/build
// measures it), so the default keeps the index under about 150 MiB.
const DefaultMaxEntries = 1_000_000

// Options configure an Index.
type Options struct {
	// StateDir is the directory push times are kept in; empty keeps them in memory only.
	StateDir string
	// MaxEntries bounds the index (DefaultMaxEntries when 0).
	MaxEntries int
	// Snapshot, if set, returns a read-only driver over the registry's storage as it is
	// at the call, for the start-up build to read instead of the live driver; nil, nil
	// when there is nothing to read yet.
	Snapshot func(ctx context.Context) (storagedriver.StorageDriver, error)
	Log      *slog.Logger
}

// Index is the registry's index. Build it with New, add its Middleware to Distribution's
// configuration, then Run it.
type Index struct {
	opts Options
	log  *slog.Logger
	q    queue

	// Set when Distribution builds its app (see Middleware).
	ns   distribution.Namespace // the app's namespace, through this middleware
	live source                 // a registry over the same driver: reads that never clone

	pushes *pushLog

	mu        sync.RWMutex
	repos     map[string]*repo
	cloned    map[string]bool // digest repositories made for a clone
	sorted    []*repo         // as Distribution's catalog sorts them
	manifests map[digest.Digest]*manifest
	users     map[digest.Digest][]digest.Digest // blob or child manifest → manifests listing it
	entries   int
	truncated bool
	ready     bool
}

// Repository is a repository as the index knows it.
type Repository struct {
	Name string
	Tags []Tag // sorted by name
	// Pushed is the last time a tag was pushed to it, zero if not known.
	Pushed time.Time
	// Cloned is set for a repository named by a CID whose digest repository is not here:
	// it was cloned from the network rather than pushed here.
	Cloned bool
}

// Tag is a tag and the manifest it points at.
type Tag struct {
	Name   string
	Digest digest.Digest
}

// Manifest describes a manifest some repository tags, or one such an index lists.
type Manifest struct {
	Digest       digest.Digest
	MediaType    string
	ArtifactType string
	Kind         Kind
	// Size is the size of the config and layers, each blob counted once; for an index,
	// those of all its manifests.
	Size     int64
	Blobs    []Blob          // config, then layers
	Children []digest.Digest // the manifests of an index
}

// Blob is a config or layer of a manifest.
type Blob struct {
	Digest digest.Digest
	Size   int64
}

type repo struct {
	name string
	kind nameKind
	tags []Tag
	held []bool // whether tags[i] counts as a holder of its manifest
}

// nameKind says whether a repository is named by Disco's global addressing.
type nameKind uint8

const (
	pushedName nameKind = iota
	digestName
	cidName
)

func kindOf(name string) nameKind {
	if global.IsDigestName(name) {
		return digestName
	}
	if _, ok := global.ParseCIDName(name); ok {
		return cidName
	}
	return pushedName
}

type manifest struct {
	Manifest
	holders int // tags naming it, and held manifests listing it
}

// Status says how complete the index is.
type Status struct {
	// Ready is set once every repository the registry held at start-up is in the index.
	Ready bool
	// Truncated is set when the memory bound kept something out of the index.
	Truncated    bool
	Repositories int
	Manifests    int
	Entries      int
}

// New returns an empty index.
func New(o Options) *Index {
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Index{
		opts:      o,
		log:       o.Log,
		q:         newQueue(),
		pushes:    &pushLog{times: map[string]time.Time{}},
		repos:     map[string]*repo{},
		cloned:    map[string]bool{},
		manifests: map[digest.Digest]*manifest{},
		users:     map[digest.Digest][]digest.Digest{},
	}
}

// Status reports how complete the index is.
func (ix *Index) Status() Status {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return Status{Ready: ix.ready, Truncated: ix.truncated, Repositories: len(ix.repos),
		Manifests: len(ix.manifests), Entries: ix.entries}
}

// Query selects repositories, in the catalog's order.
type Query struct {
	// After is the name the previous page ended with, as the catalog's last.
	After string
	// Limit is the most repositories to return (100 when 0).
	Limit int
	// Match keeps the names that contain it.
	Match string
	// Global keeps the repositories named by a digest, and those named by a CID that
	// also has a digest repository here: the names Disco gives an image pushed here.
	Global bool
}

// Repositories returns the repositories q selects, and whether more follow.
func (ix *Index) Repositories(q Query) (page []Repository, more bool) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	ix.mu.RLock()
	i, found := slices.BinarySearchFunc(ix.sorted, q.After, byName)
	if found {
		i++
	}
	for ; i < len(ix.sorted); i++ {
		r := ix.sorted[i]
		if !strings.Contains(r.name, q.Match) || !q.Global && ix.given(r) {
			continue
		}
		if len(page) == q.Limit {
			more = true
			break
		}
		page = append(page, ix.repository(r))
	}
	ix.mu.RUnlock()
	ix.pushes.fill(page)
	return page, more
}

func (ix *Index) repository(r *repo) Repository {
	return Repository{Name: r.name, Tags: r.tags, Cloned: r.kind == cidName && !ix.given(r)}
}

// given reports whether r holds one of the names Disco gives an image pushed here: its
// digest, or its CID when the digest repository is here too and was not made for a clone
// (a clone's CID repository is the image's only name here but its digest's).
func (ix *Index) given(r *repo) bool {
	switch r.kind {
	case digestName:
		return true
	case pushedName:
		return false
	}
	for _, t := range r.tags {
		hex := t.Digest.Encoded()
		if _, ok := ix.repos[hex]; ok && !ix.cloned[hex] {
			return true
		}
	}
	return false
}

// setCloned records whether the digest repository name was made for a clone.
func (ix *Index) setCloned(name string, cloned bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if cloned {
		ix.cloned[name] = true
	} else {
		delete(ix.cloned, name)
	}
}

// Repository returns the repository name, if the index has it.
func (ix *Index) Repository(name string) (Repository, bool) {
	ix.mu.RLock()
	r, ok := ix.repos[name]
	var out Repository
	if ok {
		out = ix.repository(r)
	}
	ix.mu.RUnlock()
	if ok {
		out.Pushed = ix.pushes.get(name)
	}
	return out, ok
}

// Manifest returns the manifest d, if the index has it.
func (ix *Index) Manifest(d digest.Digest) (Manifest, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	m, ok := ix.manifests[d]
	if !ok {
		return Manifest{}, false
	}
	return m.Manifest, true
}

// Use is an image that uses a digest: a tag of a repository pointing at a manifest that
// is the digest, lists it, or is an index of manifests that list it (Via).
type Use struct {
	Repository string
	Tag        string
	Manifest   digest.Digest
	// Via are the manifests of the index Manifest that list the digest.
	Via []digest.Digest
}

// MaxUses bounds what Uses returns.
const MaxUses = 1000

// Uses returns the images that use d (a manifest, config or layer digest), sorted by
// repository and tag, at most MaxUses of them; more says whether there were others.
func (ix *Index) Uses(d digest.Digest) (uses []Use, more bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	// up maps each manifest that is d or lists it, directly or through the manifests of
	// an index, to the manifests it lists that lead to d (d itself if it lists d).
	up := map[digest.Digest][]digest.Digest{}
	if _, ok := ix.manifests[d]; ok {
		up[d] = nil
	}
	for frontier := []digest.Digest{d}; len(frontier) > 0; frontier = frontier[1:] {
		x := frontier[0]
		for _, p := range ix.users[x] {
			if _, seen := up[p]; !seen {
				frontier = append(frontier, p)
			}
			up[p] = append(up[p], x)
		}
	}
	_, isManifest := ix.manifests[d]
	// direct returns the manifests at or below m that are d or, d being a blob, list it.
	var direct func(m digest.Digest) []digest.Digest
	direct = func(m digest.Digest) []digest.Digest {
		if m == d || !isManifest && slices.Contains(up[m], d) {
			return []digest.Digest{m}
		}
		var out []digest.Digest
		for _, x := range up[m] {
			out = append(out, direct(x)...)
		}
		return out
	}
	for _, r := range ix.sorted {
		name := r.name
		for _, t := range r.tags {
			if _, ok := up[t.Digest]; !ok {
				continue
			}
			if len(uses) == MaxUses {
				return uses, true
			}
			via := direct(t.Digest)
			slices.Sort(via)
			via = slices.DeleteFunc(slices.Compact(via), func(x digest.Digest) bool { return x == t.Digest })
			uses = append(uses, Use{Repository: name, Tag: t.Name, Manifest: t.Digest, Via: via})
		}
	}
	return uses, false
}

func byName(r *repo, name string) int { return compareNames(r.name, name) }

// compareNames orders repository names as Distribution's catalog does: by path
// component, so that "a/b" comes before "a-b".
func compareNames(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		if x == '/' {
			x = 0
		}
		if y == '/' {
			y = 0
		}
		if x != y {
			return cmp.Compare(x, y)
		}
	}
	return cmp.Compare(len(a), len(b))
}

// Refresh has the index read the repository name again from the registry, soon.
func (ix *Index) Refresh(name string) { ix.q.add(name) }

// Sync waits until the changes seen before it was called are in the index.
func (ix *Index) Sync(ctx context.Context) error { return ix.q.wait(ctx) }
