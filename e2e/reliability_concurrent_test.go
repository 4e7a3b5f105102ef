package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestReliabilityConcurrent pushes 16 at a time: 16 images sharing one layer into one
// repository, 16 images under one tag, and one image to 16 repositories. Every push must
// succeed with no 5xx, and every image pull by name, digest and CID.
func TestReliabilityConcurrent(t *testing.T) {
	t.Parallel()
	const n = 16
	d := startDisco(t, discoOptions{})
	rt := newCounting()
	var pushes, failed int
	var pulls tally
	var firstErr error
	// push pushes imgs[i] to refs[i], all at once, and counts the failures.
	push := func(refs []string, imgs []v1.Image) {
		errs := make([]error, len(refs))
		var wg sync.WaitGroup
		for i := range refs {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				errs[i] = pushTo(ctx, rt, refs[i], imgs[i])
			})
		}
		wg.Wait()
		for _, err := range errs {
			pushes++
			if err != nil {
				failed++
				firstErr = cmpErr(firstErr, err)
			}
		}
	}
	check := func(ref string, want v1.Hash) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pulls.add(pullCheck(ctx, rt, ref, want))
	}
	checkAll := func(p pushedImage) {
		check(p.ref, p.digest)
		check(byDigest(p), p.digest)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pulls.add(pullByCID(ctx, rt, p))
	}

	ran := rounds(1, func(round int) bool {
		// One layer, pushed by 16 clients at once into one repository.
		shared, err := random.Layer(3<<20, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		var refs []string
		var imgs []v1.Image
		for i := range n {
			refs = append(refs, fmt.Sprintf("%s/conc/layer%d:%d", d.Host, round, i))
			imgs = append(imgs, labelled(t, shared, i))
		}
		push(refs, imgs)
		for i := range refs {
			checkAll(pushedImage{refs[i], imageDigest(t, imgs[i])})
		}

		// One tag, pushed by 16 clients at once: it names one of their images, and the
		// others pull by digest and CID.
		refs, imgs = nil, nil
		var digests []v1.Hash
		for range n {
			img := randomImage(t, 512<<10, 2)
			refs = append(refs, fmt.Sprintf("%s/conc/tag%d:latest", d.Host, round))
			imgs = append(imgs, img)
			digests = append(digests, imageDigest(t, img))
		}
		push(refs, imgs)
		tagged := manifestDigest(t, d, fmt.Sprintf("conc/tag%d", round), "latest")
		i := slices.IndexFunc(digests, func(h v1.Hash) bool { return h.String() == tagged })
		if i < 0 {
			t.Errorf("after 16 pushes of one tag, it names %s, none of the images pushed", tagged)
		} else {
			check(refs[i], digests[i])
		}
		for i := range refs {
			p := pushedImage{refs[i], digests[i]}
			check(byDigest(p), p.digest)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			pulls.add(pullByCID(ctx, rt, p))
			cancel()
		}

		// One image, pushed by 16 clients at once to 16 repositories.
		refs, imgs = nil, nil
		img := randomImage(t, 2<<20, 2)
		for i := range n {
			refs = append(refs, fmt.Sprintf("%s/conc/many%d/r%d:v1", d.Host, round, i))
			imgs = append(imgs, img)
		}
		push(refs, imgs)
		for _, ref := range refs {
			checkAll(pushedImage{ref, imageDigest(t, img)})
		}
		return !t.Failed()
	})
	figures(t, "concurrent pushers: %d rounds of 16-way pushes (one layer, one tag, one image to 16 repositories), "+
		"%d pushes, %d failed, %d pulls by name, digest and CID, %d lost, %d corrupted, %d 5xx",
		ran, pushes, failed, pulls.pulls, pulls.lost, pulls.corrupted, rt.n.Load())
	if failed > 0 {
		t.Errorf("%d of %d concurrent pushes failed, the first: %v", failed, pushes, firstErr)
	}
	pulls.check(t)
	rt.check(t)
}

// labelled returns an image of the layer l whose config has the label i, so that each i
// gives another image.
func labelled(t *testing.T, l v1.Layer, i int) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(randomImage(t, 0, 0), l)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Labels = map[string]string{"i": strconv.Itoa(i)}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// cmpErr keeps the first error.
func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
