package driver

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync/atomic"
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

// describingNode counts the Stat and List calls made of a node that lists names for less
// (an ipfs.Namer).
type describingNode struct {
	ipfs.Node
	stats, lists atomic.Int64
}

func (n *describingNode) Stat(ctx context.Context, p string) (ipfs.Entry, error) {
	n.stats.Add(1)
	return n.Node.Stat(ctx, p)
}

func (n *describingNode) List(ctx context.Context, p string) ([]ipfs.Entry, error) {
	n.lists.Add(1)
	return n.Node.List(ctx, p)
}

func (n *describingNode) Names(ctx context.Context, p string) ([]string, error) {
	return ipfs.Names(ctx, n.Node, p)
}

// TestWalkDescribesOnlyWhatIsAsked walks repositories as the catalog does, skipping the
// directories whose names start with "_": on a node that lists names, the walk describes
// (a Stat) only the entries whose walk goes on, and describes no directory's entries
// all at once (a List).
func TestWalkDescribesOnlyWhatIsAsked(t *testing.T) {
	ctx := context.Background()
	node := &describingNode{Node: embeddedNode}
	d := newDriver(t, node)
	for _, p := range []string{"/r/a/_manifests/x", "/r/a/_layers/x", "/r/a/_uploads/x", "/r/b/_manifests/x", "/r/c/d/_manifests/x"} {
		if err := d.PutContent(ctx, p, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	err := d.Walk(ctx, "/r", func(fi storagedriver.FileInfo) error {
		got = append(got, fi.Path())
		if strings.HasPrefix(path.Base(fi.Path()), "_") {
			return storagedriver.ErrSkipDir
		}
		return nil
	})
	want := []string{"/r/a", "/r/a/_layers", "/r/a/_manifests", "/r/a/_uploads", "/r/b", "/r/b/_manifests", "/r/c", "/r/c/d", "/r/c/d/_manifests"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Walk = %q, %v; want %q", got, err, want)
	}
	// a, b, c and c/d.
	if stats := node.stats.Load(); stats != 4 {
		t.Errorf("the walk made %d Stats, want 4", stats)
	}
	if lists := node.lists.Load(); lists != 0 {
		t.Errorf("the walk made %d Lists, want none", lists)
	}
}

// TestPagedWalkStartsAtItsHint walks a large directory from a hint near its end, as each
// page of tags/list does: the walk makes nothing for the entries before the hint, so a
// listing in pages costs about the directory once per page, not an entry made for every
// name on every page.
func TestPagedWalkStartsAtItsHint(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t, embeddedNode)
	const tags = 2000
	for i := range tags {
		if err := d.PutContent(ctx, fmt.Sprintf("/paged/tags/t%05d/current/link", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	page := func() {
		got = got[:0]
		err := d.Walk(ctx, "/paged/tags", func(fi storagedriver.FileInfo) error {
			// As tags/list's walk has it: what is below the hint is walked too, and
			// skipped.
			if tag := strings.TrimPrefix(fi.Path(), "/paged/tags/"); !strings.Contains(tag, "/") {
				got = append(got, tag)
			}
			return storagedriver.ErrSkipDir
		}, storagedriver.WithStartAfterHint(fmt.Sprintf("/paged/tags/t%05d", tags-11)))
		if err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(5, page)
	if len(got) != 10 || got[0] != fmt.Sprintf("t%05d", tags-10) {
		t.Fatalf("the page lists %q, want the last 10 tags", got)
	}
	if allocs > tags/10 {
		t.Errorf("a walk of the last 10 of %d entries made %.0f allocations, want under %d", tags, allocs, tags/10)
	}
}
