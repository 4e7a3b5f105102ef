package global_test

import (
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/discoregistry/disco/internal/disctest"
)

// catalogPages walks d's catalog n repositories a page.
func catalogPages(t *testing.T, d *disctest.Disco, n int) []string {
	t.Helper()
	reg, err := name.NewRegistry(d.Host, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	last := ""
	for range 100 {
		page, err := remote.CatalogPage(reg, last, n)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < n {
			return all
		}
		last = page[len(page)-1]
	}
	t.Fatalf("the catalog does not end: %q", all)
	return nil
}

// TestCatalogNames lists the catalog, a page of one or two repositories at a time: by
// default with every name, with disco.catalog.pushedonly with the pushed names and the
// CID name of a cloned image only.
func TestCatalogNames(t *testing.T) {
	a := disctest.Start(t, "")
	b := disctest.Start(t, "disco: {catalog: {pushedonly: true}, clonetimeout: 20s}\n", a)
	x, _ := random.Image(512, 1)
	y, _ := random.Image(512, 1)
	hx := a.Push(t, "app/x:v1", x)
	hy := b.Push(t, "app/y:v1", y)
	cloned := a.CIDOf(t, hx)
	disctest.PullAll(t, b.Ref(t, cloned))
	b.Push(t, "app/y:v2", y)

	want := []string{hx.Hex, "app/x", cloned}
	slices.Sort(want)
	for _, n := range []int{1, 2, 100} {
		if got := catalogPages(t, a, n); !slices.Equal(got, want) {
			t.Errorf("catalog, %d a page = %q, want %q", n, got, want)
		}
	}
	want = []string{"app/y", cloned}
	slices.Sort(want)
	for _, n := range []int{1, 2, 100} {
		if got := catalogPages(t, b, n); !slices.Equal(got, want) {
			t.Errorf("pushed only: catalog, %d a page = %q, want %q (not %s, %s)", n, got, want, hy.Hex, b.CIDOf(t, hy))
		}
	}
}
