package index

import (
	"context"
	"errors"
	"fmt"
	"path"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/layout"
)

// Bounds on what one repository adds, against hostile manifests from the network.
const (
	maxIndexDepth = 4
	maxDescribed  = 10000 // manifests read for one repository
)

// refreshTimeout bounds the reads of one repository.
const refreshTimeout = time.Minute

// source is what the index reads repositories from: a registry, and its driver.
type source struct {
	reg    distribution.Namespace
	driver storagedriver.StorageDriver
}

// Run builds the index from the registry, then keeps it up to date, until ctx ends. The
// registry answers meanwhile: the index fills up in the background. Run needs the app
// built (see Middleware).
//
// The build reads a snapshot of the registry (Options.Snapshot), if it has one; a
// repository changed meanwhile is read from the live registry instead.
func (ix *Index) Run(ctx context.Context) error {
	if ix.live.reg == nil {
		return errors.New("index: Run before Distribution's app was built with its middleware")
	}
	if err := ix.pushes.open(ix.opts.StateDir); err != nil {
		ix.log.Warn("index: push times are kept in memory only", "err", err)
	}
	defer ix.pushes.close()

	start := time.Now()
	built := ix.snapshot(ctx)
	enum, ok := built.reg.(distribution.RepositoryEnumerator)
	if !ok {
		return errors.New("index: the registry cannot enumerate its repositories")
	}
	err := enum.Enumerate(ctx, func(name string) error {
		ix.q.addBuilt(name)
		return nil
	})
	// A stop while the build reads is no error of the registry's.
	if err != nil && ctx.Err() == nil && !errors.As(err, new(storagedriver.PathNotFoundError)) {
		ix.log.Error("index: list repositories", "err", err)
	}
	// The worker starts once every repository of the snapshot is queued: a change seen
	// meanwhile has its repository read live instead (queue.put), and one seen later
	// is read after the snapshot's reading of it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			name, live, err := ix.q.next(ctx)
			if err != nil {
				return
			}
			src := built
			if live || built.reg == nil {
				src = ix.live
			}
			ix.refresh(ctx, name, src, live)
			// Every name of the snapshot was queued before this worker started, so the
			// queue's first empty moment ends the build: the snapshot, and the caches
			// of a walk of the whole registry it holds, can go. Waiting for Ready
			// instead kept them until the next change, Ready being set a moment after.
			if ix.q.done() && built.reg != nil {
				built = source{}
				// What the build read is garbage now, and the heap grew for it: at
				// 15,600 images, 60 MiB more than the index kept, held until the next
				// collection, which an idle registry may not make for long.
				debug.FreeOSMemory()
			}
		}
	}()
	if err := ix.q.wait(ctx); err == nil {
		ix.mu.Lock()
		ix.ready = true
		names := make(map[string]bool, len(ix.repos))
		for name := range ix.repos {
			names[name] = true
		}
		ix.mu.Unlock()
		ix.pushes.keep(func(name string) bool { return names[name] })
		st := ix.Status()
		ix.log.Info("index built", "repositories", st.Repositories, "manifests", st.Manifests,
			"truncated", st.Truncated, "took", time.Since(start).Round(time.Millisecond))
	}
	<-done
	return nil
}

// snapshot returns the source the build reads: a snapshot, or else the live registry.
func (ix *Index) snapshot(ctx context.Context) source {
	if ix.opts.Snapshot == nil {
		return ix.live
	}
	d, err := ix.opts.Snapshot(ctx)
	if err != nil || d == nil {
		if err != nil && ctx.Err() == nil {
			ix.log.Warn("index: no snapshot of the registry, reading it live", "err", err)
		}
		return ix.live
	}
	reg, err := storage.NewRegistry(ctx, d)
	if err != nil {
		ix.log.Warn("index: no snapshot of the registry, reading it live", "err", err)
		return ix.live
	}
	return source{reg: reg, driver: d}
}

// refresh reads the repository name from src and puts what it holds in the index, or
// drops it if it is gone. live says whether src is the live registry.
func (ix *Index) refresh(ctx context.Context, name string, src source, live bool) {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	tags, described, err := ix.read(ctx, src, name)
	if errors.Is(err, errGone) {
		ix.drop(name)
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			ix.log.Warn("index: read repository", "repository", name, "err", err)
		}
		return
	}
	ix.store(name, tags, described)
	if _, isCID := global.ParseCIDName(name); isCID && live {
		// A clone files the image under its digest too: read that repository as well.
		for _, t := range tags {
			if t.Name == "latest" && !ix.has(t.Digest.Encoded()) {
				ix.q.add(t.Digest.Encoded())
			}
		}
	}
	if global.IsDigestName(name) {
		_, err := src.driver.Stat(ctx, path.Join(layout.Repository(name), global.ClonedMarker))
		ix.setCloned(name, err == nil)
		// The digest repository is tagged with the CID: that repository is new too.
		pushed := ix.pushes.get(name)
		for _, t := range tags {
			if _, ok := global.ParseCIDName(t.Name); ok {
				if !pushed.IsZero() {
					ix.pushes.record(t.Name, pushed)
				}
				if live && !ix.has(t.Name) {
					ix.q.add(t.Name)
				}
			}
		}
	}
}

var errGone = errors.New("repository is gone")

// read returns the tags of the repository name and the manifests they name that the
// index does not describe yet.
func (ix *Index) read(ctx context.Context, src source, name string) ([]Tag, map[digest.Digest]*Manifest, error) {
	named, err := reference.WithName(name)
	if err != nil {
		return nil, nil, errGone // not a name Distribution would hold
	}
	repo, err := src.reg.Repository(ctx, named)
	if err != nil {
		return nil, nil, err
	}
	ts := repo.Tags(ctx)
	names, err := ts.All(ctx)
	if errors.As(err, new(distribution.ErrRepositoryUnknown)) {
		// No tags: the repository is there as long as its manifests are.
		_, err := src.driver.Stat(ctx, path.Join(layout.Repository(name), "_manifests"))
		if errors.As(err, new(storagedriver.PathNotFoundError)) {
			return nil, nil, errGone
		}
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, err
	}
	var tags []Tag
	for _, t := range names {
		desc, err := ts.Get(ctx, t)
		if errors.As(err, new(distribution.ErrTagUnknown)) {
			continue // untagged meanwhile
		}
		if err != nil {
			return nil, nil, fmt.Errorf("tag %s: %w", t, err)
		}
		tags = append(tags, Tag{Name: strings.Clone(t), Digest: desc.Digest}) // not the path it was cut from
	}
	slices.SortFunc(tags, func(a, b Tag) int { return compareNames(a.Name, b.Name) })
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return nil, nil, err
	}
	described := map[digest.Digest]*Manifest{}
	for _, t := range tags {
		if _, known := ix.Manifest(t.Digest); !known {
			if err := describe(ctx, ms, t.Digest, described, 0); err != nil && ctx.Err() == nil {
				ix.log.Warn("index: read manifest", "repository", name, "manifest", t.Digest, "err", err)
			}
		}
	}
	return tags, described, nil
}

// describe reads the manifest d, and those an index lists, into out.
func describe(ctx context.Context, ms distribution.ManifestService, d digest.Digest, out map[digest.Digest]*Manifest, depth int) error {
	if _, ok := out[d]; ok {
		return nil
	}
	if depth > maxIndexDepth || len(out) >= maxDescribed {
		return fmt.Errorf("manifest %s: too deep or too many manifests", d)
	}
	m, err := ms.Get(ctx, d)
	if err != nil {
		return err
	}
	_, payload, err := m.Payload()
	if err != nil {
		return err
	}
	f, err := ParseManifest(payload)
	if err != nil {
		return err
	}
	s := &Manifest{Digest: d, MediaType: f.MediaType, ArtifactType: f.Type(), Kind: f.Kind()}
	out[d] = s
	if f.Config != nil {
		s.Blobs = append(s.Blobs, Blob{Digest: f.Config.Digest, Size: f.Config.Size})
	}
	for _, l := range f.Layers {
		s.Blobs = append(s.Blobs, Blob{Digest: l.Digest, Size: l.Size})
	}
	sizes := map[digest.Digest]int64{}
	for _, b := range s.Blobs {
		sizes[b.Digest] = b.Size
	}
	for _, c := range f.Manifests {
		if c.Digest.Validate() != nil {
			continue
		}
		s.Children = append(s.Children, c.Digest)
		if err := describe(ctx, ms, c.Digest, out, depth+1); err != nil {
			return err
		}
		for _, b := range out[c.Digest].Blobs {
			sizes[b.Digest] = b.Size
		}
	}
	for _, size := range sizes {
		s.Size += size
	}
	return nil
}
