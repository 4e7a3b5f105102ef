package mirror

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/layout"
)

// completeDelay is how long the background completion of an image waits after its
// manifest is served, so that the client's own requests, which get blobs as they come,
// fetch what they ask for.
const completeDelay = time.Second

// completeAtOnce bounds the blobs of one image fetched at once in the background.
const completeAtOnce = 3

// served notes that the manifest d of repo was served, under the tag if not empty: the
// tag is mirrored, the blob sizes the manifest gives are noted, and the image is
// completed and published in the background.
func (m *Mirror) served(ctx context.Context, repo distribution.Repository, d digest.Digest, man distribution.Manifest, tag string) {
	name := repo.Named().Name()
	for _, ref := range man.References() {
		m.sizes.Add(ref.Digest, ref.Size)
	}
	if tag != "" {
		m.tag(ctx, repo, tag, d, man)
	}
	if isIndex(man) {
		m.mu.Lock()
		for _, child := range man.References() {
			key := name + "@" + child.Digest.String()
			if !slices.Contains(m.parents[key], d) {
				m.parents[key] = append(m.parents[key], d)
			}
		}
		m.mu.Unlock()
	}
	m.complete(name, d)
}

// tag points the tag of repo at the manifest d, if it does not yet. It leaves the tag as
// it is while other work on d goes on: d may be expiring. The next pull tags it.
func (m *Mirror) tag(ctx context.Context, repo distribution.Repository, tag string, d digest.Digest, man distribution.Manifest) {
	ts := repo.Tags(ctx)
	if cur, err := ts.Get(ctx, tag); err == nil && cur.Digest == d {
		return
	}
	f, first := m.fetches.start(d)
	if !first {
		return
	}
	defer m.fetches.end(d, f, nil)
	if linked, err := m.linked(ctx, repo, d, manifestKind); err != nil || !linked {
		return // expired meanwhile
	}
	mediaType, payload, _ := man.Payload()
	if err := ts.Tag(ctx, tag, v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(payload))}); err != nil {
		m.log.Warn("mirror: keep tag", "repository", repo.Named().Name(), "tag", tag, "err", err)
		return
	}
	m.changed(repo.Named().Name())
}

func isIndex(man distribution.Manifest) bool {
	mediaType, _, _ := man.Payload()
	return mediaType == v1.MediaTypeImageIndex || mediaType == "application/vnd.docker.distribution.manifest.list.v2+json"
}

// complete completes the image d of the repository name in the background, unless it is
// done or under way, and publishes it; then each index that lists it, if complete too.
func (m *Mirror) complete(name string, d digest.Digest) {
	key := name + "@" + d.String()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.published[key] || m.completing[key] || m.ctx.Err() != nil {
		return
	}
	m.completing[key] = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := m.completeImage(m.ctx, name, d)
		m.mu.Lock()
		delete(m.completing, key)
		parents := m.parents[key]
		if err == nil {
			m.published[key] = true
		}
		m.mu.Unlock()
		switch {
		case err == nil:
			for _, p := range parents {
				m.complete(name, p)
			}
		case driver.IsNotFound(err):
			// An index some of whose images are not here: it is published once they are.
			m.log.Debug("mirror: not complete yet", "repository", name, "manifest", d, "err", err)
		case m.ctx.Err() == nil:
			m.log.Warn("mirror: could not complete the image", "repository", name, "manifest", d, "err", err)
		}
	}()
}

// completeImage fetches the blobs of the image manifest d that are not here yet, and
// publishes it. Of an index, it fetches nothing: it publishes the index if every image it
// lists is here.
func (m *Mirror) completeImage(ctx context.Context, name string, d digest.Digest) error {
	select {
	case <-time.After(completeDelay):
	case <-ctx.Done():
		return ctx.Err()
	}
	repo, err := m.repository(ctx, name)
	if err != nil {
		return err
	}
	b, err := driver.ReadFile(ctx, m.store, layout.Blob(d), maxManifestSize)
	if err != nil {
		return err
	}
	var refs struct {
		Config *v1.Descriptor  `json:"config"`
		Layers []v1.Descriptor `json:"layers"`
		Index  []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(b, &refs); err != nil {
		return err
	}
	if refs.Index == nil {
		blobs := refs.Layers
		if refs.Config != nil {
			blobs = append([]v1.Descriptor{*refs.Config}, blobs...)
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(completeAtOnce)
		for _, blob := range blobs {
			if len(blob.URLs) > 0 {
				continue // non-distributable: clients fetch it from its URLs
			}
			g.Go(func() error {
				_, err := m.ensure(gctx, repo, blob.Digest, blobKind, blob.Size, nil, true)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	return m.publish(ctx, name, d)
}

// publish files the manifest d of the repository name under its digest and CID, unless it
// expires first.
func (m *Mirror) publish(ctx context.Context, name string, d digest.Digest) error {
	f, err := m.fetches.turn(ctx, d)
	if err != nil {
		return err
	}
	defer m.fetches.end(d, f, nil)
	c, err := m.g.Publish(ctx, name, d)
	if err != nil {
		return err
	}
	m.changed(d.Encoded())
	m.metrics.published.Inc()
	m.log.Info("mirror: published", "repository", name, "manifest", d, "cid", c)
	return nil
}
