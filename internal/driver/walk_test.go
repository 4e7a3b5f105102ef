package driver

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/discoregistry/disco/internal/ipfs"
)

// testWalkAsFallback walks a tree with nested directories from several hints: the
// driver's Walk reports what WalkFallback reports, in its order; stopped after a few
// entries, as the catalog stops it, it reports the first of them.
func testWalkAsFallback(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	d := newDriver(t, node)
	for _, p := range []string{
		"/r/a/_manifests/x", "/r/a/_layers/x", "/r/a-b/_manifests/x", "/r/a.b/_manifests/x",
		"/r/b/c/_manifests/x", "/r/b/c/_layers/x", "/r/b/d/_manifests/x", "/r/b/_manifests/x",
		"/r/c/_manifests/x", "/r/z/y/x/_manifests/x", "/other/f",
	} {
		if err := d.PutContent(ctx, p, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	walk := func(w func(context.Context, storagedriver.StorageDriver, string, storagedriver.WalkFn, ...func(*storagedriver.WalkOptions)) error, from, after string, limit int) ([]string, error) {
		var got []string
		err := w(ctx, d, from, func(fi storagedriver.FileInfo) error {
			got = append(got, fi.Path())
			if len(got) == limit {
				return storagedriver.ErrFilledBuffer
			}
			if strings.HasSuffix(fi.Path(), "/_manifests") {
				return storagedriver.ErrSkipDir
			}
			return nil
		}, storagedriver.WithStartAfterHint(after))
		return got, err
	}
	ours := func(ctx context.Context, sd storagedriver.StorageDriver, from string, f storagedriver.WalkFn, o ...func(*storagedriver.WalkOptions)) error {
		return sd.Walk(ctx, from, f, o...)
	}
	for _, tc := range []struct{ from, after string }{
		{"/r", ""}, {"/r", "/r/a/_manifests"}, {"/r", "/r/a"}, {"/r", "/r/a-b"},
		{"/r", "/r/b/c/_manifests"}, {"/r", "/r/b/c"}, {"/r", "/r/b/_manifests"}, {"/r", "/r/bb"},
		{"/r", "/r/z/y/x/_manifests"}, {"/r", "/r/zz"}, {"/r", "/a"}, {"/r", "/s"}, {"/", "/other"},
		{"/r", "/r"},
	} {
		want, werr := walk(storagedriver.WalkFallback, tc.from, tc.after, 0)
		got, err := walk(ours, tc.from, tc.after, 0)
		if !slices.Equal(got, want) || !errors.Is(err, werr) {
			t.Errorf("Walk(%s after %q) = %q, %v; WalkFallback: %q, %v", tc.from, tc.after, got, err, want, werr)
		}
		if got, err := walk(ours, tc.from, tc.after, 3); !slices.Equal(got, want[:min(3, len(want))]) || err != nil {
			t.Errorf("Walk(%s after %q) stopped after 3 = %q, %v; want %q", tc.from, tc.after, got, err, want[:min(3, len(want))])
		}
	}
}
