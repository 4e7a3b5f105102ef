package e2e

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestManyImages is the part of discobench -growth that does not depend on timing, on
// 300 images: each pushed to its own repository and tagged, so the registry holds 900
// repositories with their digest and CID names. Every image pulls, before and after a
// restart; the catalog lists every repository once across its pages; no upload leaves a
// directory behind. 300 rather than 500 keeps the test under half a minute on a busy
// 2-core machine, where the pushes take most of it.
func TestManyImages(t *testing.T) {
	const images = 300
	d := startDisco(t, discoOptions{})
	imgs := make([]v1.Image, images)
	each(t, images, func(i int) error {
		img, err := random.Image(4096, 1)
		if err != nil {
			return err
		}
		imgs[i] = img
		return remote.Write(ref(t, fmt.Sprintf("%s/many/r%03d:v1", d.Host, i)), img)
	})
	checkAll := func() {
		each(t, images, func(i int) error {
			return pullImage(fmt.Sprintf("%s/many/r%03d:v1", d.Host, i), imgs[i])
		})
	}
	checkAll()

	reg, err := name.NewRegistry(d.Host, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	pages, last := 0, ""
	for ; pages < 100; pages++ {
		page, err := remote.CatalogPage(reg, last, 100)
		if err != nil {
			t.Fatalf("catalog after %q: %v", last, err)
		}
		for _, r := range page {
			seen[r]++
		}
		if len(page) < 100 {
			break
		}
		last = page[len(page)-1]
	}
	if len(seen) != 3*images {
		t.Errorf("the catalog lists %d repositories in %d pages, want %d", len(seen), pages+1, 3*images)
	}
	for r, n := range seen {
		if n != 1 {
			t.Errorf("the catalog lists %s %d times", r, n)
		}
	}
	for i, img := range imgs {
		h := imageDigest(t, img)
		if seen[fmt.Sprintf("many/r%03d", i)] != 1 || seen[h.Hex] != 1 {
			t.Errorf("the catalog does not list many/r%03d and %s", i, h.Hex)
		}
	}

	uploads := filepath.Join(d.Home, ".disco", "uploads")
	var left []string
	filepath.WalkDir(uploads, func(p string, e fs.DirEntry, err error) error {
		// The directories above every repository's may stay.
		if err == nil && e.IsDir() && !strings.HasPrefix("/docker/registry/v2/repositories", strings.TrimPrefix(p, uploads)) {
			left = append(left, strings.TrimPrefix(p, uploads))
		}
		return err
	})
	if len(left) > 0 {
		t.Errorf("%d directories left in the uploads directory, such as %s", len(left), left[0])
	}

	d.Stop()
	d.Restart()
	checkAll()
}

// pullImage pulls s and checks that its manifest and layers are those of want.
func pullImage(s string, want v1.Image) error {
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(r)
	if err != nil {
		return fmt.Errorf("pull %s: %w", s, err)
	}
	got, err := img.Digest()
	if err != nil {
		return err
	}
	if h, _ := want.Digest(); got != h {
		return fmt.Errorf("%s: manifest %s, want %s", s, got, h)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed() // checked against its digest as it is read
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		if err = errors.Join(err, rc.Close()); err != nil {
			return fmt.Errorf("%s: layer: %w", s, err)
		}
	}
	return nil
}

// each runs f for 0 to n-1, four at a time, failing t on the first error.
func each(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}
