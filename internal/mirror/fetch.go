package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/layout"
)

// kind is what a digest names: a blob (config or layer), or a manifest.
type kind int

const (
	blobKind kind = iota
	manifestKind
)

func (k kind) String() string {
	if k == manifestKind {
		return "manifest"
	}
	return "blob"
}

// link is where a repository links content of the kind.
func (k kind) link(d digest.Digest) string {
	if k == manifestKind {
		return layout.RevisionLink(d)
	}
	return layout.LayerLink(d)
}

// maxBlobSize bounds a blob whose size the upstream does not give.
const maxBlobSize = 64 << 30

// cutError reports a blob sent to a client as it came from the upstream that turned out
// bad: the client must not take what it got.
type cutError struct{ err error }

func (e *cutError) Error() string { return "blob sent as it came, cut off: " + e.err.Error() }
func (e *cutError) Unwrap() error { return e.err }

// ensure makes d, a blob or a manifest of the local repository repo, local and linked in
// repo: a blob from the registry's own blobs, from a peer that holds it, or from the
// upstream; a manifest from a peer or the upstream. size is the blob's size if known,
// else -1. w, if set, is a client waiting for the blob: it gets the blob as it comes from
// the upstream, and ensure reports whether it did. delegate lets the mirror ask the peer
// whose turn it is to fetch d from the upstream to do so, rather than fetch it itself; a
// fetch for a peer does not delegate again.
//
// Everyone asking for d at once shares one fetch. The fetch goes on, within its bounds,
// when its client goes away: others may be waiting for it, and it is kept.
func (m *Mirror) ensure(ctx context.Context, repo distribution.Repository, d digest.Digest, k kind, size int64, w http.ResponseWriter, delegate bool) (served bool, err error) {
	var f *flight
	for {
		if linked, err := m.linked(ctx, repo, d, k); linked || err != nil {
			return false, err
		}
		var first bool
		if f, first = m.fetches.start(d); first {
			break
		}
		// A fetch of d, its publishing or its expiry: once it ends, d may be linked
		// here, held, or gone.
		if err := f.wait(ctx); err != nil {
			return false, err
		}
	}
	defer func() {
		if err == nil && k == manifestKind {
			m.expiry.mirrored(d)
		}
		var cut *cutError
		ferr := err
		if errors.As(err, &cut) {
			ferr = cut.err // those who waited were sent nothing
		}
		m.fetches.end(d, f, ferr)
	}()
	ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	defer context.AfterFunc(m.ctx, stop)() // Close stops it

	// A blob the registry holds is linked. A manifest is fetched again: which manifests a
	// repository of the upstream has is the upstream's to say, and the registry keeps
	// the bytes of an expired one until disco gc.
	if k == blobKind {
		held, err := driver.Exists(ctx, m.store, layout.Blob(d))
		if err != nil {
			return false, err
		}
		if held {
			return false, m.link(ctx, repo, d, k)
		}
	}
	if m.peers != nil {
		if a, ok := m.peers.find(ctx, repo.Named().Name(), d, k, delegate); ok {
			err := m.g.Fetch(ctx, d, a.cid)
			if err == nil {
				m.metrics.fetched(sourcePeer, k, a.size)
				m.log.Debug("mirror: fetched from a peer", "repository", repo.Named().Name(), "digest", d, "peer", a.from)
				return false, m.link(ctx, repo, d, k)
			}
			m.log.Warn("mirror: fetch from a peer failed, asking the upstream", "digest", d, "peer", a.from, "err", err)
		}
	}
	if k == manifestKind {
		return false, m.pullManifest(ctx, repo, d)
	}
	return m.pullBlob(ctx, repo, d, size, w)
}

// linked reports whether repo links d.
func (m *Mirror) linked(ctx context.Context, repo distribution.Repository, d digest.Digest, k kind) (bool, error) {
	return driver.Exists(ctx, m.store, path.Join(layout.Repository(repo.Named().Name()), k.link(d)))
}

// link links d, which the registry holds, in repo.
func (m *Mirror) link(ctx context.Context, repo distribution.Repository, d digest.Digest, k kind) error {
	if linked, err := m.linked(ctx, repo, d, k); linked || err != nil {
		return err
	}
	if k == blobKind {
		return m.store.PutContent(ctx, path.Join(layout.Repository(repo.Named().Name()), k.link(d)), []byte(d.String()))
	}
	b, err := driver.ReadFile(ctx, m.store, layout.Blob(d), maxManifestSize)
	if err != nil {
		return err
	}
	return m.put(ctx, repo, b, "")
}

// pullManifest fetches the manifest d from the upstream and stores it in repo.
func (m *Mirror) pullManifest(ctx context.Context, repo distribution.Repository, d digest.Digest) error {
	ctx, cancel := context.WithTimeout(ctx, 2*m.up.timeout)
	defer cancel()
	b, mediaType, err := m.up.getManifest(ctx, repo.Named().Name(), d.String(), d)
	if err != nil {
		return err
	}
	m.metrics.fetched(sourceUpstream, manifestKind, int64(len(b)))
	return m.put(ctx, repo, b, mediaType)
}

// put stores the manifest b in repo, as Distribution's pull-through cache does: without
// checking that what it names is there yet.
func (m *Mirror) put(ctx context.Context, repo distribution.Repository, b []byte, mediaType string) error {
	man, _, err := distribution.UnmarshalManifest(manifestType(b, mediaType), b)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", digest.FromBytes(b), err)
	}
	ms, err := repo.Manifests(ctx, storage.SkipLayerVerification())
	if err != nil {
		return err
	}
	if _, err := ms.Put(ctx, man); err != nil {
		return err
	}
	m.changed(repo.Named().Name())
	return nil
}

// manifestType returns the media type of the manifest b: what its upstream said, else
// what it says, else what it looks like (an OCI manifest need not say), as Distribution
// reads manifests back.
func manifestType(b []byte, given string) string {
	if mt, _, err := mime.ParseMediaType(given); err == nil && mt != "application/json" && mt != "text/plain" {
		return mt
	}
	var m struct {
		MediaType string            `json:"mediaType"`
		Manifests []json.RawMessage `json:"manifests"`
	}
	json.Unmarshal(b, &m)
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.Manifests != nil:
		return v1.MediaTypeImageIndex
	}
	return v1.MediaTypeImageManifest
}

// pullBlob fetches the blob d from the upstream into repo, and sends it to w as it comes
// if w is set and the blob's size is known.
func (m *Mirror) pullBlob(ctx context.Context, repo distribution.Repository, d digest.Digest, size int64, w http.ResponseWriter) (served bool, err error) {
	body, n, err := m.up.getBlob(ctx, repo.Named().Name(), d)
	if err != nil {
		return false, err
	}
	defer body.Close()
	if n < 0 {
		n = size
	}
	bw, err := repo.Blobs(ctx).Create(ctx)
	if err != nil {
		return false, err
	}
	committed := false
	defer func() {
		if !committed {
			bw.Cancel(ctx)
		}
	}()
	v := d.Verifier()
	dst := io.MultiWriter(bw, v)
	var client *clientWriter
	if w != nil && n > 0 {
		blobHeaders(w.Header(), d, n)
		w.WriteHeader(http.StatusOK)
		client = &clientWriter{w: w, hold: n - 1}
		dst = io.MultiWriter(bw, v, client)
	}
	limit := int64(maxBlobSize)
	if n >= 0 {
		limit = n + 1
	}
	got, err := io.Copy(dst, io.LimitReader(body, limit))
	if err == nil && (n >= 0 && got != n || !v.Verified()) {
		err = &UpstreamError{URL: m.up.url, Err: fmt.Errorf("blob %s: %d bytes that do not match it", d, got)}
	}
	if err != nil {
		if client != nil {
			return false, &cutError{err: err}
		}
		return false, err
	}
	if client != nil {
		client.finish()
	}
	m.metrics.fetched(sourceUpstream, blobKind, got)
	if _, err := bw.Commit(ctx, v1.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: got}); err != nil {
		return client != nil, fmt.Errorf("keep blob %s: %w", d, err)
	}
	committed = true
	return client != nil, nil
}

// clientWriter sends a blob to a client as it comes but for its last byte, which finish
// sends once the whole blob is checked: a client never gets all of a blob that does not
// match its digest. A client that goes away is left behind; the fetch goes on.
type clientWriter struct {
	w    http.ResponseWriter
	hold int64 // bytes to send before holding back
	sent int64
	last []byte
	gone bool
}

func (c *clientWriter) Write(p []byte) (int, error) {
	send := p
	if room := max(c.hold-c.sent, 0); int64(len(send)) > room {
		c.last = append(c.last, send[room:]...)
		send = send[:room]
	}
	if len(send) > 0 && !c.gone {
		if _, err := c.w.Write(send); err != nil {
			c.gone = true
		}
	}
	c.sent += int64(len(send))
	return len(p), nil
}

func (c *clientWriter) finish() {
	if !c.gone {
		c.w.Write(c.last)
	}
}

func blobHeaders(h http.Header, d digest.Digest, size int64) {
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", fmt.Sprint(size))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Etag", fmt.Sprintf("%q", d))
}
