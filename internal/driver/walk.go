package driver

import (
	"context"
	"errors"
	"path"
	"slices"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Walk walks as storagedriver.WalkFallback does, in the same order and with the same
// calls of f (but none after ErrFilledBuffer, which WalkFallback may still make above
// the hint's directory), and starts after a hint without going through what comes
// before it:
// Distribution's catalog walks the repositories once for every page, after the last
// repository of the page before, and WalkFallback would list and compare every
// repository before it, for every page.
func (d *driver) Walk(ctx context.Context, from string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	var o storagedriver.WalkOptions
	for _, opt := range options {
		opt(&o)
	}
	after := o.StartAfterHint
	if after != "" && !within(after, from) {
		// A hint outside from: the walk is all before it, or all after it.
		if strings.ReplaceAll(after, "/", "\x00") > strings.ReplaceAll(from, "/", "\x00") {
			return nil
		}
		after = ""
	}
	_, err := d.walk(ctx, from, after, f)
	return err
}

// within reports whether p is below dir.
func within(p, dir string) bool {
	return dir == "/" && p != "/" || strings.HasPrefix(p, dir+"/")
}

// walk walks dir, depth first, skipping what is not after the path after (a path
// below dir, or ""): after itself, and what comes before it, but not what is below it.
// It reports whether the walk goes on. It describes each directory's entries with one
// List, not with a Stat of each as WalkFallback does.
func (d *driver) walk(ctx context.Context, dir, after string, f storagedriver.WalkFn) (bool, error) {
	es, err := d.node.List(ctx, d.mfs(dir))
	if errors.Is(err, ipfs.ErrNotFound) && dir == "/" {
		return true, nil // the root always exists, even before anything is written
	}
	if err != nil {
		return false, pathError(dir, err)
	}
	// The name of the entry of dir that after is, or is below.
	var first string
	if after != "" {
		first, _, _ = strings.Cut(strings.TrimPrefix(after[len(dir):], "/"), "/")
		i, _ := slices.BinarySearchFunc(es, first, func(e ipfs.Entry, name string) int { return strings.Compare(e.Name, name) })
		es = es[i:]
	}
	for _, e := range es {
		if !validElem(e.Name) {
			continue // see names
		}
		child := path.Join(dir, e.Name)
		if after != "" && e.Name == first {
			below := after
			if child == after {
				below = ""
				if !e.IsDir {
					continue
				}
			}
			if more, err := d.walk(ctx, child, below, f); err != nil || !more {
				return more, err
			}
			continue
		}
		fi := storagedriver.FileInfoFields{Path: child, IsDir: e.IsDir, Size: e.Size}
		fi.ModTime, _ = d.mtimes.Get(child) // as Stat has it
		err = f(storagedriver.FileInfoInternal{FileInfoFields: fi})
		switch {
		case err == nil && e.IsDir:
			if more, err := d.walk(ctx, child, "", f); err != nil || !more {
				return more, err
			}
		case errors.Is(err, storagedriver.ErrSkipDir):
		case errors.Is(err, storagedriver.ErrFilledBuffer):
			return false, nil
		case err != nil:
			return false, err
		}
	}
	return true, nil
}
