package driver

import (
	"context"
	"errors"
	"slices"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/discoregistry/disco/internal/ipfs"
)

// testSnapshot checks that a snapshot reads the registry as it was when taken, walks it
// as Distribution's WalkFallback does, and refuses writes.
func testSnapshot(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	d := newDriver(t, node)
	for p, content := range map[string]string{"/a/b/c": "c", "/a/d": "d", "/e/f/g": "g", "/e/h": "h"} {
		if err := d.PutContent(ctx, p, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := Snapshot(ctx, node, d.inner().root)
	if err != nil {
		t.Fatal(err)
	}
	// Changed after the snapshot: it does not see these.
	if err := d.PutContent(ctx, "/a/new", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, "/e"); err != nil {
		t.Fatal(err)
	}

	for p, want := range map[string]string{"/a/b/c": "c", "/e/f/g": "g", "/e/h": "h"} {
		if got, err := snap.GetContent(ctx, p); err != nil || string(got) != want {
			t.Errorf("GetContent(%s) = %q, %v; want %q", p, got, err, want)
		}
	}
	if got, err := snap.List(ctx, "/a"); err != nil || !slices.Equal(got, []string{"/a/b", "/a/d"}) {
		t.Errorf("List(/a) = %q, %v; want /a/b and /a/d", got, err)
	}
	if fi, err := snap.Stat(ctx, "/e/f"); err != nil || !fi.IsDir() {
		t.Errorf("Stat(/e/f) = %v, %v; want a directory", fi, err)
	}
	if fi, err := snap.Stat(ctx, "/e/h"); err != nil || fi.IsDir() || fi.Size() != 1 {
		t.Errorf("Stat(/e/h) = %v, %v; want a file of 1 byte", fi, err)
	}
	for _, p := range []string{"/a/new", "/nope", "/nope/deeper", "/a/d/under-a-file"} {
		if _, err := snap.Stat(ctx, p); !errors.As(err, new(storagedriver.PathNotFoundError)) {
			t.Errorf("Stat(%s): %v, want PathNotFoundError", p, err)
		}
	}

	walk := func(w func(context.Context, storagedriver.StorageDriver, string, storagedriver.WalkFn, ...func(*storagedriver.WalkOptions)) error, skip string) []string {
		var got []string
		err := w(ctx, snap, "/", func(fi storagedriver.FileInfo) error {
			got = append(got, fi.Path())
			if fi.Path() == skip {
				return storagedriver.ErrSkipDir
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	ours := func(ctx context.Context, d storagedriver.StorageDriver, p string, f storagedriver.WalkFn, o ...func(*storagedriver.WalkOptions)) error {
		return d.Walk(ctx, p, f, o...)
	}
	for _, skip := range []string{"", "/a", "/e/f"} {
		got, want := walk(ours, skip), walk(storagedriver.WalkFallback, skip)
		if !slices.Equal(got, want) || len(got) < 4 {
			t.Errorf("Walk skipping %q: %q, WalkFallback: %q", skip, got, want)
		}
	}
	if got := walk(ours, ""); !slices.Equal(got, []string{"/a", "/a/b", "/a/b/c", "/a/d", "/e", "/e/f", "/e/f/g", "/e/h"}) {
		t.Errorf("Walk: %q", got)
	}

	// Remembering one directory, a snapshot still reads through: it forgets the others,
	// never the root, which every other is resolved from.
	small, err := newSnapshot(ctx, node, d.inner().root, 1)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for p, want := range map[string]string{"/a/b/c": "c", "/a/new": "new", "/e": ""} {
			got, err := small.GetContent(ctx, p)
			if p == "/e" {
				if !errors.As(err, new(storagedriver.PathNotFoundError)) {
					t.Errorf("small snapshot: GetContent(/e): %v, want PathNotFoundError", err)
				}
				continue
			}
			if err != nil || string(got) != want {
				t.Errorf("small snapshot: GetContent(%s) = %q, %v; want %q", p, got, err, want)
			}
		}
	}

	if err := snap.PutContent(ctx, "/x", []byte("x")); err == nil {
		t.Error("a snapshot took a write")
	}
	if err := snap.Delete(ctx, "/a"); err == nil {
		t.Error("a snapshot took a delete")
	}
}
