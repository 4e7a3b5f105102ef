package global

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// image is what a manifest needs to be pulled: its manifests (the top one first, then those
// an index lists) and its blobs (configs and layers), each once, in manifest order.
type image struct {
	manifests []digest.Digest
	blobs     []v1.Descriptor
	seen      map[digest.Digest]bool
}

// Bounds on what a manifest may reference, against hostile content from the network.
const (
	maxManifestSize = 4 << 20
	maxIndexDepth   = 4
	maxReferences   = 10000
)

var errTooBig = errors.New("image references too much")

// manifestRefs is the part of any manifest (Docker or OCI, image or index) that names
// other content. A subject is not needed to pull an image and is left out.
type manifestRefs struct {
	Config    *v1.Descriptor  `json:"config"`
	Layers    []v1.Descriptor `json:"layers"`
	Manifests []v1.Descriptor `json:"manifests"`
}

// walkImage collects the image of the manifest top, reading manifests with read.
func walkImage(ctx context.Context, top digest.Digest, read func(context.Context, digest.Digest) ([]byte, error)) (*image, error) {
	img := &image{seen: map[digest.Digest]bool{}}
	return img, img.walk(ctx, top, read, 0)
}

func (img *image) walk(ctx context.Context, d digest.Digest, read func(context.Context, digest.Digest) ([]byte, error), depth int) error {
	if img.seen[d] {
		return nil
	}
	if depth > maxIndexDepth || len(img.seen) > maxReferences {
		return errTooBig
	}
	img.seen[d] = true
	img.manifests = append(img.manifests, d)
	payload, err := read(ctx, d)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	var refs manifestRefs
	if err := json.Unmarshal(payload, &refs); err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	for _, m := range refs.Manifests {
		if err := checkDescriptor(m); err != nil {
			return fmt.Errorf("manifest %s: %w", d, err)
		}
		if err := img.walk(ctx, m.Digest, read, depth+1); err != nil {
			return err
		}
	}
	var blobs []v1.Descriptor
	if refs.Config != nil {
		blobs = append(blobs, *refs.Config)
	}
	for _, b := range append(blobs, refs.Layers...) {
		if err := checkDescriptor(b); err != nil {
			return fmt.Errorf("manifest %s: %w", d, err)
		}
		if !img.seen[b.Digest] {
			img.seen[b.Digest] = true
			img.blobs = append(img.blobs, b)
		}
	}
	return nil
}

func checkDescriptor(d v1.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("descriptor %q: %w", d.Digest, err)
	}
	return nil
}

// foreign reports whether a blob may be missing from a registry: a non-distributable
// layer, which clients fetch from its URLs.
func foreign(d v1.Descriptor) bool { return len(d.URLs) > 0 }
