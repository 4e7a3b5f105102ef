package mirror

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// A mirror refuses every write, as Distribution's pull-through cache does: Distribution
// answers distribution.ErrUnsupported with 405 UNSUPPORTED.

func (r repository) Manifests(ctx context.Context, options ...distribution.ManifestServiceOption) (distribution.ManifestService, error) {
	ms, err := r.Repository.Manifests(ctx, options...)
	if err != nil {
		return nil, err
	}
	return manifests{ManifestService: ms, repo: r}, nil
}

func (r repository) Blobs(ctx context.Context) distribution.BlobStore {
	return blobs{BlobStore: r.Repository.Blobs(ctx), repo: r}
}

func (r repository) Tags(ctx context.Context) distribution.TagService {
	return tags{TagService: r.Repository.Tags(ctx), repo: r}
}

// manifests serves manifests from the registry, pulling through those it lacks.
type manifests struct {
	distribution.ManifestService // the local one
	repo                         repository
}

func (ms manifests) Exists(ctx context.Context, d digest.Digest) (bool, error) {
	if ok, err := ms.ManifestService.Exists(ctx, d); ok || err != nil {
		return ok, err
	}
	_, err := ms.repo.m.up.headManifest(ctx, ms.repo.Named().Name(), d.String())
	if notFound(err) {
		return false, nil
	}
	return err == nil, ociError(err, errcode.ErrorCodeManifestUnknown)
}

func (ms manifests) Get(ctx context.Context, d digest.Digest, options ...distribution.ManifestServiceOption) (distribution.Manifest, error) {
	m := ms.repo.m
	man, err := ms.ManifestService.Get(ctx, d, options...)
	if errors.As(err, new(distribution.ErrManifestUnknownRevision)) {
		if _, err = m.ensure(ctx, ms.repo.Repository, d, manifestKind, -1, nil, true); err != nil {
			return nil, ociError(err, errcode.ErrorCodeManifestUnknown)
		}
		man, err = ms.ManifestService.Get(ctx, d, options...)
	}
	if err != nil {
		return nil, err
	}
	var tag string
	for _, o := range options {
		if t, ok := o.(distribution.WithTagOption); ok {
			tag = t.Tag
		}
	}
	m.served(ctx, ms.repo.Repository, d, man, tag)
	return man, nil
}

func (manifests) Put(context.Context, distribution.Manifest, ...distribution.ManifestServiceOption) (digest.Digest, error) {
	return "", distribution.ErrUnsupported
}

func (manifests) Delete(context.Context, digest.Digest) error { return distribution.ErrUnsupported }

// blobs serves blobs from the registry, pulling through those it lacks.
type blobs struct {
	distribution.BlobStore // the local one
	repo                   repository
}

// Stat describes a blob not held yet without fetching it: from the manifests served, else
// from the upstream. Distribution's blob handler stats a blob before it serves it.
func (bs blobs) Stat(ctx context.Context, d digest.Digest) (v1.Descriptor, error) {
	desc, err := bs.BlobStore.Stat(ctx, d)
	if !errors.Is(err, distribution.ErrBlobUnknown) {
		return desc, err
	}
	m := bs.repo.m
	size, ok := m.sizes.Get(d)
	if !ok {
		if size, err = m.up.blobSize(ctx, bs.repo.Named().Name(), d); err != nil {
			if notFound(err) {
				return v1.Descriptor{}, distribution.ErrBlobUnknown
			}
			return v1.Descriptor{}, ociError(err, errcode.ErrorCodeBlobUnknown)
		}
	}
	return v1.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: size}, nil
}

// ensure makes the blob d local, sending it to w as it comes if w is set, and reports
// whether it did.
func (bs blobs) ensure(ctx context.Context, d digest.Digest, w http.ResponseWriter) (bool, error) {
	size := int64(-1)
	if s, ok := bs.repo.m.sizes.Get(d); ok {
		size = s
	}
	served, err := bs.repo.m.ensure(ctx, bs.repo.Repository, d, blobKind, size, w, true)
	if err != nil {
		return served, ociError(err, errcode.ErrorCodeBlobUnknown)
	}
	return served, nil
}

func (bs blobs) ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, d digest.Digest) error {
	if _, err := bs.BlobStore.Stat(ctx, d); err == nil {
		return bs.BlobStore.ServeBlob(ctx, w, r, d)
	}
	if r.Method == http.MethodHead {
		desc, err := bs.Stat(ctx, d)
		if err != nil {
			return err
		}
		blobHeaders(w.Header(), d, desc.Size)
		w.WriteHeader(http.StatusOK)
		return nil
	}
	var client http.ResponseWriter
	if r.Header.Get("Range") == "" {
		client = w
	}
	served, err := bs.ensure(ctx, d, client)
	var cut *cutError
	if errors.As(err, &cut) {
		bs.repo.m.log.Warn("mirror: blob cut off", "digest", d, "err", cut.err)
		panic(http.ErrAbortHandler) // the client must not take what it got
	}
	if err != nil || served {
		return err
	}
	return bs.BlobStore.ServeBlob(ctx, w, r, d)
}

func (bs blobs) Get(ctx context.Context, d digest.Digest) ([]byte, error) {
	if _, err := bs.ensure(ctx, d, nil); err != nil {
		return nil, err
	}
	return bs.BlobStore.Get(ctx, d)
}

func (bs blobs) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error) {
	if _, err := bs.ensure(ctx, d, nil); err != nil {
		return nil, err
	}
	return bs.BlobStore.Open(ctx, d)
}

func (blobs) Put(context.Context, string, []byte) (v1.Descriptor, error) {
	return v1.Descriptor{}, distribution.ErrUnsupported
}

func (blobs) Create(context.Context, ...distribution.BlobCreateOption) (distribution.BlobWriter, error) {
	return nil, distribution.ErrUnsupported
}

func (blobs) Resume(context.Context, string) (distribution.BlobWriter, error) {
	return nil, distribution.ErrUnsupported
}

func (blobs) Delete(context.Context, digest.Digest) error { return distribution.ErrUnsupported }

// tags resolves tags at the upstream, and from what was mirrored when the upstream fails.
type tags struct {
	distribution.TagService // the local one
	repo                    repository
}

// Get asks the upstream what the tag names, with one HEAD; the tag is mirrored when its
// manifest is served. If the upstream fails, the tag as last mirrored is served, as
// Distribution's pull-through cache does.
func (ts tags) Get(ctx context.Context, tag string) (v1.Descriptor, error) {
	m := ts.repo.m
	name := ts.repo.Named().Name()
	desc, err := m.up.headManifest(ctx, name, tag)
	if err == nil {
		return desc, nil
	}
	local, lerr := ts.TagService.Get(ctx, tag)
	if lerr == nil {
		m.log.Info("mirror: the upstream failed; serving the tag as mirrored", "repository", name, "tag", tag, "err", err)
		return local, nil
	}
	if notFound(err) {
		return v1.Descriptor{}, distribution.ErrTagUnknown{Tag: tag}
	}
	return v1.Descriptor{}, ociError(err, errcode.ErrorCodeManifestUnknown)
}

func (ts tags) All(ctx context.Context) ([]string, error) {
	if list, err := ts.repo.m.up.tags(ctx, ts.repo.Named().Name(), 0, ""); err == nil {
		return list, nil
	}
	return ts.TagService.All(ctx)
}

func (ts tags) List(ctx context.Context, limit int, last string) ([]string, error) {
	list, err := ts.repo.m.up.tags(ctx, ts.repo.Named().Name(), limit, last)
	if err == nil {
		if len(list) < limit || limit <= 0 {
			return list, io.EOF // Distribution's tag store says there are no more so
		}
		return list, nil
	}
	return ts.TagService.List(ctx, limit, last)
}

func (tags) Tag(context.Context, string, v1.Descriptor) error { return distribution.ErrUnsupported }

func (tags) Untag(context.Context, string) error { return distribution.ErrUnsupported }
