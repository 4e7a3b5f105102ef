package global

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/discoregistry/disco/internal/layout"
)

// blobs serves the blobs of a CID repository that are not local yet from the network.
//
// A blob up to checkFirst bytes is fetched, checked against its digest and linked before
// it is served. A larger one is streamed to the client as it arrives and checked on the
// way, so that fetching, checking and sending overlap; if it does not match, the
// connection is cut before the end, so the client never gets it whole, and the repository
// is refused. Either way a blob is linked under its digest only once checked.
type blobs struct {
	distribution.BlobStore
	name string
	g    *Global
}

// checkFirst is the largest blob fetched in full, and checked, before it is served.
const checkFirst = 4 << 20

// remote returns the CID of a blob of the repository that is not held locally; ok is
// false for one that is held, or is not the repository's.
func (b blobs) remote(ctx context.Context, d digest.Digest) (c cid.Cid, ok bool, err error) {
	m, err := b.g.blobMap(ctx, b.name)
	if err != nil {
		return cid.Undef, false, err
	}
	c, listed := m[d]
	if !listed {
		return cid.Undef, false, nil
	}
	have, err := b.g.exists(ctx, layout.Blob(d))
	return c, !have && err == nil, err
}

// ensure fetches, checks and links the blob d if it is the repository's and not local.
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
	return b.failed(ctx, d, err)
}

// failed handles a blob that could not be fetched, and returns the error to answer with.
func (b blobs) failed(ctx context.Context, d digest.Digest, err error) error {
	if ctx.Err() != nil {
		return err // the client has gone
	}
	b.g.blobFailed(ctx, b.name, d, err)
	if lies(err) {
		return errcode.ErrorCodeBlobUnknown.WithDetail(err.Error())
	}
	return errcode.ErrorCodeBlobUnknown.WithDetail(fmt.Sprintf("could not fetch %s from IPFS: %v", d, err))
}

// lies reports an error about content from the network that is not what it claims.
func lies(err error) bool {
	var mismatch *MismatchError
	var tooLarge *TooLargeError
	return errors.As(err, &mismatch) || errors.As(err, &tooLarge)
}

// describe returns the CID and size of a blob of the repository that is not held
// locally, from what the network says of it; ok is false for one that is held, or is not
// the repository's.
func (b blobs) describe(ctx context.Context, d digest.Digest) (c cid.Cid, size int64, ok bool, err error) {
	c, ok, err = b.remote(ctx, d)
	if err != nil || !ok {
		return cid.Undef, 0, false, err
	}
	size, err = b.g.remoteSize(ctx, d, c)
	if err != nil {
		return cid.Undef, 0, false, b.failed(ctx, d, err)
	}
	return c, size, true, nil
}

// Stat describes a blob that is not local yet from what the network says of it, without
// fetching it; Distribution's GET and HEAD handlers stat a blob before they serve it.
func (b blobs) Stat(ctx context.Context, d digest.Digest) (v1.Descriptor, error) {
	_, size, ok, err := b.describe(ctx, d)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if ok {
		return v1.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: size}, nil
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

// ServeBlob answers a HEAD of a blob that is not local without fetching it, streams a big
// one to a GET, and fetches a small one before Distribution serves it.
func (b blobs) ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, d digest.Digest) error {
	c, size, ok, err := b.describe(ctx, d)
	if err != nil {
		return err
	}
	switch {
	case ok && r.Method == http.MethodHead:
		blobHeaders(w.Header(), d, size)
		w.WriteHeader(http.StatusOK)
		return nil
	case ok && r.Method == http.MethodGet && r.Header.Get("Range") == "" && size > checkFirst && d.Algorithm() == digest.Canonical:
		b.g.stream(ctx, w, b.name, d, c, size)
		return nil
	}
	if err := b.ensure(ctx, d); err != nil {
		return err
	}
	return b.BlobStore.ServeBlob(ctx, w, r, d)
}

func blobHeaders(h http.Header, d digest.Digest, size int64) {
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", fmt.Sprint(size))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Etag", fmt.Sprintf("%q", d))
}

// remoteSize returns the size of the file c, asking the network for its root if need be,
// and refuses a size larger than a cloned blob may be.
func (g *Global) remoteSize(ctx context.Context, d digest.Digest, c cid.Cid) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, g.opts.CloneTimeout)
	defer cancel()
	e, err := g.nodeFor(layout.Blob(d)).Stat(ctx, "/ipfs/"+c.String())
	if err != nil {
		return 0, err
	}
	if e.IsDir {
		return 0, &MismatchError{Digest: d, CID: c}
	}
	if e.Size > g.opts.CloneMaxBlob {
		return 0, &TooLargeError{Digest: d, Size: e.Size, Limit: g.opts.CloneMaxBlob, Key: "disco.clonemaxblob"}
	}
	return e.Size, nil
}

// stream sends the blob d of the repository name, fetched as c, to the client as it
// arrives, and links it once it is all there and matches d. If it does not, the
// connection is cut and the repository refused.
func (g *Global) stream(ctx context.Context, w http.ResponseWriter, name string, d digest.Digest, c cid.Cid, size int64) {
	g.metrics.blobsInFlight.Inc()
	defer g.metrics.blobsInFlight.Dec()
	ctx, cancel := context.WithTimeout(ctx, g.fetchTimeout(size))
	defer cancel()
	node := g.nodeFor(layout.Blob(d))
	go node.Fetch(ctx, c) // fetches blocks many at a time, ahead of the reader
	r, err := node.Read(ctx, "/ipfs/"+c.String(), 0)
	if err != nil {
		g.blobFailed(ctx, name, d, err)
		errcode.ServeJSON(w, errcode.ErrorCodeBlobUnknown.WithDetail(fmt.Sprintf("could not fetch %s from IPFS: %v", d, err)))
		return
	}
	defer r.Close()
	blobHeaders(w.Header(), d, size)
	w.WriteHeader(http.StatusOK)
	v := d.Verifier()
	n, err := io.Copy(w, io.TeeReader(io.LimitReader(r, size+1), v))
	switch {
	case err == nil && n == size && v.Verified():
		g.metrics.fetchedBytes.Add(float64(n))
		// The client has the whole blob once the last bytes leave the buffer: linking
		// it, which reads its leaves again and syncs the disk, need not hold them back.
		if err := http.NewResponseController(w).Flush(); err != nil {
			g.log.Debug("flush streamed blob", "digest", d, "err", err)
		}
		if err := g.linkBlob(context.WithoutCancel(ctx), d, c, size); err != nil {
			g.log.Error("link fetched blob", "digest", d, "err", err)
		}
		return
	case err == nil:
		err = &MismatchError{Digest: d, CID: c}
	}
	g.blobFailed(ctx, name, d, err)
	panic(http.ErrAbortHandler) // the client must not take what it got for the blob
}
