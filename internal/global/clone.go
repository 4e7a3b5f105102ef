package global

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/ipfs/boxo/files"
	"github.com/ipfs/boxo/verifcid"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/layout"
)

// MismatchError reports content from the network that does not match its digest.
type MismatchError struct {
	Digest digest.Digest
	CID    cid.Cid
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("content of %s does not match digest %s", e.CID, e.Digest)
}

// minFetchRate bounds how slowly a blob may arrive: a fetch gets the clone timeout plus
// its size at this rate before it is given up.
const minFetchRate = 1 << 20 // bytes per second

func (g *Global) fetchTimeout(size int64) time.Duration {
	return g.opts.CloneTimeout + time.Duration(size/minFetchRate)*time.Second
}

// ensureRepository makes sure that the repository name, if it is a CID, is in the local
// registry, cloning it from the network if need be.
func (g *Global) ensureRepository(ctx context.Context, name string) error {
	c, ok := ParseCIDName(name)
	if !ok {
		return nil
	}
	if reason, ok := g.refused.Get(name); ok {
		return refused(name, reason)
	}
	if since, ok := g.missing.Get(name); ok {
		return errcode.ErrorCodeNameUnknown.WithDetail(fmt.Sprintf(
			"no IPFS node answered for %s within %s, %s ago", name, g.opts.CloneTimeout, time.Since(since).Round(time.Second)))
	}
	have, err := g.exists(ctx, layout.Repository(name))
	if err != nil || have {
		return err
	}
	if g.opts.NoClone {
		return errcode.ErrorCodeNameUnknown.WithDetail("not held here, and disco.noclone is set")
	}
	if err := checkCID(c); err != nil {
		return errcode.ErrorCodeNameUnknown.WithDetail(fmt.Sprintf("%s cannot name a repository: %v", name, err))
	}
	// The clone is shared by everyone pulling this CID, and stops when none of them waits.
	return g.clones.do(ctx, name, g.opts.CloneTimeout, func(ctx context.Context) error {
		return g.clone(ctx, name, c)
	})
}

// checkCID refuses CIDs that name no directory, or whose hash IPFS does not trust.
func checkCID(c cid.Cid) error {
	if c.Type() != cid.DagProtobuf {
		return fmt.Errorf("codec %s is not dag-pb", multicodec.Code(c.Type()))
	}
	return verifcid.ValidateCid(verifcid.DefaultAllowlist, c)
}

// clone copies the CID repository c from the network. It fetches the repository directory
// and the image's manifests, checking every manifest against its digest and the directory
// against disco.json, and links the repository in. Layers follow as clients ask for them.
func (g *Global) clone(ctx context.Context, name string, c cid.Cid) (err error) {
	start := time.Now()
	g.metrics.inProgress.Inc()
	defer g.metrics.inProgress.Dec()
	defer func() { g.observeClone(name, start, err) }()

	g.log.Info("cloning", "cid", name)
	node := g.nodeFor(layout.Repository(name))
	if err := node.Fetch(ctx, c); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			g.missing.Add(name, time.Now()) // a client that asks again soon is not kept waiting
			return errcode.ErrorCodeNameUnknown.WithDetail(
				fmt.Sprintf("no IPFS node answered for %s within %s", name, g.opts.CloneTimeout))
		}
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	root := "/ipfs/" + name
	dj, err := ipfs.ReadFile(ctx, node, root+"/"+discoJSONName, maxDiscoJSON)
	if err != nil {
		return refused(name, err)
	}
	blobs, err := parseDiscoJSON(dj)
	if err != nil {
		return refused(name, err)
	}
	links, err := readLinks(ctx, node, root)
	if err != nil {
		return refused(name, err)
	}
	if err := links.check(blobs); err != nil {
		return refused(name, err)
	}
	// Manifests are small and answer the first request: fetch and check them now, even
	// those held already, so that a disco.json that lies about one is refused.
	readManifest := func(ctx context.Context, d digest.Digest) ([]byte, error) {
		if stored, ok := links.aliases[d]; ok {
			if _, err := g.fetchManifest(ctx, stored, blobs[stored]); err != nil {
				return nil, err
			}
		}
		return g.fetchManifest(ctx, d, blobs[d])
	}
	for _, top := range links.tags {
		img, err := walkImage(ctx, top, readManifest)
		if err != nil {
			return refused(name, err)
		}
		if err := links.covers(img, blobs); err != nil {
			return refused(name, err)
		}
		if err := g.checkSizes(img); err != nil {
			return refused(name, err)
		}
	}
	if err := g.store.Link(ctx, layout.Repository(name), c); err != nil {
		return err
	}
	g.maps.Add(name, blobs)
	if err := g.fileDigestName(ctx, node, c, links.tags["latest"]); err != nil {
		g.log.Warn("clone: file under the manifest digest", "cid", name, "err", err)
	}
	return nil
}

// fileDigestName files the cloned CID repository c, whose latest tag is top, under top's
// hex too, tagged with the CID, as the Disco it was pushed to filed it: whoever knows the
// digest finds the CID. The repository's files are all local and small.
func (g *Global) fileDigestName(ctx context.Context, node ipfs.Node, c cid.Cid, top digest.Digest) error {
	if have, err := g.exists(ctx, layout.Repository(top.Encoded())); err != nil || have {
		return err
	}
	files, err := readFiles(ctx, node, "/ipfs/"+c.String())
	if err != nil {
		return err
	}
	files[layout.TagLink(c.String())] = []byte(top.String())
	files[layout.TagIndexLink(c.String(), top)] = []byte(top.String())
	files[ClonedMarker] = []byte(c.String())
	_, err = g.file(ctx, top.Encoded(), files)
	return err
}

// ClonedMarker is a file in a digest repository made for a clone, not for a push: the
// web page tells the two apart by it. Distribution does not look at it.
const ClonedMarker = "disco-cloned"

// readFiles reads every file of the directory at root, checked already, by path below it.
func readFiles(ctx context.Context, node ipfs.Node, root string) (map[string][]byte, error) {
	out := map[string][]byte{}
	var walk func(rel string) error
	walk = func(rel string) error {
		es, err := node.List(ctx, path.Join(root, rel))
		if err != nil {
			return err
		}
		for _, e := range es {
			p := path.Join(rel, e.Name)
			if e.IsDir {
				err = walk(p)
			} else {
				out[p], err = ipfs.ReadFile(ctx, node, path.Join(root, p), maxDiscoJSON)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk("")
}

func refused(name string, err error) error {
	return errcode.ErrorCodeNameUnknown.WithDetail(fmt.Sprintf("%s is not a usable Disco repository: %v", name, err))
}

func (g *Global) observeClone(name string, start time.Time, err error) {
	took := time.Since(start)
	result := "ok"
	if err != nil {
		result = "error"
		g.metrics.failures.WithLabelValues("clone").Inc()
		g.log.Warn("clone failed", "cid", name, "took", took.Round(time.Millisecond), "err", err)
	} else {
		g.log.Info("cloned", "cid", name, "took", took.Round(time.Millisecond))
	}
	g.metrics.duration.WithLabelValues(result).Observe(took.Seconds())
}

// fetchManifest fetches the manifest d as c, checks it and links it if it is not held yet.
func (g *Global) fetchManifest(ctx context.Context, d digest.Digest, c cid.Cid) ([]byte, error) {
	if !c.Defined() {
		return nil, fmt.Errorf("no CID for %s", d)
	}
	node := g.nodeFor(layout.Blob(d))
	b, err := ipfs.ReadFile(ctx, node, "/ipfs/"+c.String(), maxManifestSize)
	if err != nil {
		return nil, err
	}
	if d.Algorithm().FromBytes(b) != d {
		return nil, &MismatchError{Digest: d, CID: c}
	}
	have, err := g.exists(ctx, layout.Blob(d))
	if err == nil && !have {
		// Added again, the manifest gets its canonical CID (one block, or a few).
		if c, err = node.Add(ctx, files.NewBytesFile(b)); err == nil {
			err = g.store.Link(ctx, layout.Blob(d), c)
		}
	}
	return b, err
}

// checkSizes refuses an image whose manifests declare a blob, or blobs together, larger
// than the clone limits.
func (g *Global) checkSizes(img *image) error {
	var total int64
	for _, b := range img.blobs {
		if b.Size < 0 || b.Size > g.opts.CloneMaxBlob {
			return &TooLargeError{Digest: b.Digest, Size: b.Size, Limit: g.opts.CloneMaxBlob, Key: "disco.clonemaxblob"}
		}
		if total += b.Size; total > g.opts.CloneMaxSize {
			return &TooLargeError{Digest: img.manifests[0], Size: total, Limit: g.opts.CloneMaxSize, Key: "disco.clonemaxsize"}
		}
	}
	return nil
}

// TooLargeError reports content from the network larger than Disco takes.
type TooLargeError struct {
	Digest      digest.Digest
	Size, Limit int64
	Key         string // the setting that sets Limit
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: %d bytes, more than %s (%d)", e.Digest, e.Size, e.Key, e.Limit)
}

// Fetch makes sure the blob d is in the local registry, fetching it from the network as c
// and checking it against d if need be, within the clone limits. A mirror fetches what its
// peers hold with it.
func (g *Global) Fetch(ctx context.Context, d digest.Digest, c cid.Cid) error {
	if g.node == nil {
		return errors.New("no IPFS node to fetch with")
	}
	return g.ensureBlob(ctx, d, c)
}

// ensureBlob makes sure the blob d is in the local registry, fetching it as c and checking
// it against d if need be. Concurrent calls for one digest and CID share one fetch, which
// stops when none of them waits.
func (g *Global) ensureBlob(ctx context.Context, d digest.Digest, c cid.Cid) error {
	if !c.Defined() {
		return fmt.Errorf("no CID for %s", d)
	}
	have, err := g.exists(ctx, layout.Blob(d))
	if err != nil || have {
		return err
	}
	size, err := g.remoteSize(ctx, d, c)
	if err != nil {
		return fmt.Errorf("blob %s (%s): %w", d, c, err)
	}
	return g.blobs.do(ctx, d.String()+" "+c.String(), g.fetchTimeout(size), func(ctx context.Context) error {
		return g.fetchBlob(ctx, d, c, size)
	})
}

// fetchBlob fetches c, checks it against d and links it as the blob d. Nothing is linked
// unless it matches: no content under a digest is ever served that does not hash to it.
func (g *Global) fetchBlob(ctx context.Context, d digest.Digest, c cid.Cid, size int64) error {
	g.metrics.blobsInFlight.Inc()
	defer g.metrics.blobsInFlight.Dec()
	p := "/ipfs/" + c.String()
	node := g.nodeFor(layout.Blob(d))
	if err := node.Fetch(ctx, c); err != nil {
		return fmt.Errorf("blob %s (%s): %w", d, c, err)
	}
	r, err := node.Read(ctx, p, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	v := d.Verifier()
	n, err := io.Copy(v, io.LimitReader(r, size+1))
	if err != nil {
		return fmt.Errorf("blob %s (%s): %w", d, c, err)
	}
	if n != size || !v.Verified() {
		return &MismatchError{Digest: d, CID: c}
	}
	g.metrics.fetchedBytes.Add(float64(n))
	return g.linkBlob(ctx, d, c, size)
}

// linkBlob links the blob d, checked and local as c, under its canonical CID.
func (g *Global) linkBlob(ctx context.Context, d digest.Digest, c cid.Cid, size int64) error {
	canonical, err := g.canonical(ctx, g.nodeFor(layout.Blob(d)), c, size)
	if err != nil {
		return fmt.Errorf("blob %s (%s): %w", d, c, err)
	}
	return g.store.Link(ctx, layout.Blob(d), canonical)
}

// blobFailed handles a blob of the CID repository name that could not be fetched. A blob
// whose content does not match makes the whole repository refused: it is removed.
func (g *Global) blobFailed(ctx context.Context, name string, d digest.Digest, err error) {
	if !lies(err) {
		g.metrics.failures.WithLabelValues("fetch").Inc()
		g.log.Warn("blob fetch failed", "cid", name, "digest", d, "err", err)
		return
	}
	g.metrics.failures.WithLabelValues("mismatch").Inc()
	g.log.Warn("refusing repository: its content does not match its digests", "cid", name, "digest", d, "err", err)
	g.refused.Add(name, err)
	g.maps.Remove(name)
	if err := g.store.Delete(ctx, layout.Repository(name)); err != nil {
		g.log.Error("remove refused repository", "cid", name, "err", err)
	}
}
