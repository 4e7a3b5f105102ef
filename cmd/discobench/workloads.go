package main

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// A figure is one line of the report: a value measured on disco and on the reference.
type figure struct {
	name, unit string
	minRatio   float64 // target: disco/reference at least this; 0 for none
	maxDisco   float64 // target: disco's value at most this; 0 for none
}

// A workload runs once against one side and returns a value for each of its figures.
// Workloads run in the order listed; a pull finds on the side what the push before it
// left there.
type workload struct {
	figures []figure
	run     func(ctx context.Context, s *side) ([]float64, error)
}

// A side is disco or the reference: the registry the workloads run against, and what
// the last pushes left in it.
type side struct {
	name string
	reg  *registry
	// newRegistry starts another registry of the same kind, stopped at the end, for
	// workloads that need two; a disco's IPFS node is peered with those of peers.
	newRegistry func(ctx context.Context, peers ...*registry) (*registry, error)
	// second is the registry the cross-node workload moves the big image to.
	second *registry

	big   pushed
	small []pushed
}

// pushed is an image pushed by a workload, to be pulled by the next one.
type pushed struct {
	ref   name.Reference
	layer v1.Hash // the image's one layer
	size  int64
}

// workloads measures a big layer of size bytes and n small images.
type workloads struct {
	size int64
	n    int
	rnd  *rand.ChaCha8
	buf  []byte // the big layer's bytes, refilled for every push
	tags int
}

func newWorkloads(size int64, n int) *workloads {
	var seed [32]byte
	crand.Read(seed[:])
	return &workloads{size: size, n: n, rnd: rand.NewChaCha8(seed), buf: make([]byte, size)}
}

func (w *workloads) list() []workload {
	return []workload{
		{figures: []figure{
			{name: "big push", unit: "MB/s", minRatio: 0.8},
			{name: "peak RSS, big push", unit: "MiB", maxDisco: 300},
		}, run: w.bigPush},
		{figures: []figure{{name: "big pull", unit: "MB/s", minRatio: 0.8}}, run: w.bigPull},
		{figures: []figure{{name: "cross-node pull", unit: "MB/s", minRatio: 0.8}}, run: w.crossNode},
		{figures: []figure{{name: "small push", unit: "images/s", minRatio: 0.5}}, run: w.smallPush},
		{figures: []figure{{name: "small pull", unit: "images/s", minRatio: 0.5}}, run: w.smallPull},
	}
}

// bigPush pushes an image with one big layer and measures the registry's peak RSS
// while it takes it.
func (w *workloads) bigPush(ctx context.Context, s *side) ([]float64, error) {
	w.rnd.Read(w.buf)
	img, p, err := w.image(s, "big", w.buf)
	if err != nil {
		return nil, err
	}
	if err := s.reg.resetPeakRSS(); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := remote.Write(p.ref, img, remote.WithContext(ctx)); err != nil {
		return nil, err
	}
	secs := time.Since(start).Seconds()
	rss, err := s.reg.peakRSS()
	if err != nil {
		return nil, err
	}
	s.big = p
	return []float64{float64(w.size) / 1e6 / secs, rss}, nil
}

func (w *workloads) bigPull(ctx context.Context, s *side) ([]float64, error) {
	start := time.Now()
	if err := pull(ctx, s.big); err != nil {
		return nil, err
	}
	return []float64{float64(w.size) / 1e6 / time.Since(start).Seconds()}, nil
}

// crossNode moves the big image to a second registry. On disco, a client pulls it by CID
// from a second Disco, whose node fetches it over IPFS from the first one's; on the
// reference, a client copies it from one registry to the other over HTTP, as
// "crane copy" does. Both end with the image in the second registry and read in full by
// the client once.
func (w *workloads) crossNode(ctx context.Context, s *side) ([]float64, error) {
	if s.second == nil {
		r, err := s.newRegistry(ctx, s.reg)
		if err != nil {
			return nil, err
		}
		s.second = r
	}
	var err error
	start := time.Now()
	if s.reg.ipfs != "" {
		err = w.pullByCID(ctx, s)
	} else {
		err = w.copy(ctx, s)
	}
	if err != nil {
		return nil, err
	}
	return []float64{float64(w.size) / 1e6 / time.Since(start).Seconds()}, nil
}

// pullByCID pulls the big image from the second Disco by the CID the first gave it.
func (w *workloads) pullByCID(ctx context.Context, s *side) error {
	img, err := remote.Image(s.big.ref, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	h, err := img.Digest()
	if err != nil {
		return err
	}
	repo, err := name.NewRepository(s.reg.host+"/"+h.Hex, name.Insecure)
	if err != nil {
		return err
	}
	tags, err := remote.List(repo, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	for _, t := range tags {
		if strings.HasPrefix(t, "bafy") {
			ref, err := name.ParseReference(s.second.host+"/"+t, name.Insecure)
			if err != nil {
				return err
			}
			return pull(ctx, pushed{ref: ref, layer: s.big.layer, size: s.big.size})
		}
	}
	return fmt.Errorf("%s: no CID among the tags %v", repo, tags)
}

// copy copies the big image to the second registry, through the client.
func (w *workloads) copy(ctx context.Context, s *side) error {
	img, err := remote.Image(s.big.ref, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	w.tags++
	dst, err := name.ParseReference(fmt.Sprintf("%s/bench/copy:%d", s.second.host, w.tags), name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(dst, img, remote.WithContext(ctx))
}

// smallPush pushes n small images one after the other.
func (w *workloads) smallPush(ctx context.Context, s *side) ([]float64, error) {
	imgs := make([]v1.Image, w.n)
	s.small = make([]pushed, w.n)
	for i := range imgs {
		b := make([]byte, 4096)
		w.rnd.Read(b)
		var err error
		if imgs[i], s.small[i], err = w.image(s, "small", b); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	for i, img := range imgs {
		if err := remote.Write(s.small[i].ref, img, remote.WithContext(ctx)); err != nil {
			return nil, err
		}
	}
	return []float64{float64(w.n) / time.Since(start).Seconds()}, nil
}

func (w *workloads) smallPull(ctx context.Context, s *side) ([]float64, error) {
	start := time.Now()
	for _, p := range s.small {
		if err := pull(ctx, p); err != nil {
			return nil, err
		}
	}
	return []float64{float64(len(s.small)) / time.Since(start).Seconds()}, nil
}

// image returns an OCI image of one uncompressed layer holding b, to be pushed to a new
// tag of repo on s. Its digests are worked out here, not during the push.
func (w *workloads) image(s *side, repo string, b []byte) (v1.Image, pushed, error) {
	w.tags++
	ref, err := name.ParseReference(fmt.Sprintf("%s/bench/%s:%d", s.reg.host, repo, w.tags), name.Insecure)
	if err != nil {
		return nil, pushed{}, err
	}
	// An uncompressed layer is pushed as it is: the client compresses nothing.
	layer := static.NewLayer(b, types.OCIUncompressedLayer)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, pushed{}, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	if _, err := img.Digest(); err != nil {
		return nil, pushed{}, err
	}
	h, err := layer.Digest()
	return img, pushed{ref: ref, layer: h, size: int64(len(b))}, err
}

// pull fetches p's manifest and config and reads its layer in full; the client checks
// the config's and the layer's digest and size as it reads them.
func pull(ctx context.Context, p pushed) error {
	img, err := remote.Image(p.ref, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	if len(m.Layers) != 1 || m.Layers[0].Digest != p.layer || m.Layers[0].Size != p.size {
		return fmt.Errorf("%s: the manifest does not list the layer pushed (%s, %d bytes)", p.ref, p.layer, p.size)
	}
	if _, err := img.RawConfigFile(); err != nil {
		return err
	}
	layer, err := img.LayerByDigest(p.layer)
	if err != nil {
		return err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if err != nil {
		return fmt.Errorf("%s: layer %s: %w", p.ref, p.layer, err)
	}
	if n != p.size {
		return fmt.Errorf("%s: layer %s: read %d bytes, pushed %d", p.ref, p.layer, n, p.size)
	}
	return nil
}
