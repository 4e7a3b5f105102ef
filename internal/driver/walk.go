package driver

import (
	"context"
	"errors"
	"path"
	"slices"
	"strings"
	"time"

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
// It reports whether the walk goes on.
func (d *driver) walk(ctx context.Context, dir, after string, f storagedriver.WalkFn) (bool, error) {
	// The name of the entry of dir that after is, or is below.
	var first string
	if after != "" {
		first, _, _ = strings.Cut(strings.TrimPrefix(after[len(dir):], "/"), "/")
	}
	es, err := d.entries(ctx, dir, first)
	if err != nil {
		return false, err
	}
	for i := range es {
		e := &es[i]
		if after != "" && e.name == first {
			below := after
			if e.path == after {
				below = ""
				if !e.IsDir() {
					if e.err != nil {
						return false, e.err
					}
					continue
				}
			}
			if more, err := d.walk(ctx, e.path, below, f); err != nil || !more {
				return more, err
			}
			continue
		}
		err := f(e)
		isDir := err == nil && e.IsDir()
		if e.err != nil {
			return false, e.err
		}
		switch {
		case isDir:
			if more, err := d.walk(ctx, e.path, "", f); err != nil || !more {
				return more, err
			}
		case err == nil, errors.Is(err, storagedriver.ErrSkipDir):
		case errors.Is(err, storagedriver.ErrFilledBuffer):
			return false, nil
		default:
			return false, err
		}
	}
	return true, nil
}

// entries returns the entries of dir from the name first on (all of them if first is
// ""), sorted by name. Only those are made: a paginated walk (tags/list, the catalog)
// lists a large directory again for every page, and starts each past the last.
//
// On a node that lists names for less than it describes them (an ipfs.Namer), an entry
// is described, with a Stat, only when asked more than its path: the catalog looks at
// the paths of most entries alone (the _layers, _manifests and _uploads of each
// repository), and describing each cost more than the rest of the walk. On another node
// one List describes them all.
func (d *driver) entries(ctx context.Context, dir, first string) ([]walkEntry, error) {
	prefix := path.Clean(dir)
	if prefix != "/" {
		prefix += "/"
	}
	if _, ok := d.node.(ipfs.Namer); ok {
		names, err := d.names(ctx, dir)
		if err != nil {
			return nil, err
		}
		i, _ := slices.BinarySearch(names, first)
		es := make([]walkEntry, len(names)-i)
		for j, name := range names[i:] {
			es[j] = walkEntry{ctx: ctx, d: d, name: name, path: prefix + name}
		}
		return es, nil
	}
	list, err := d.node.List(ctx, d.mfs(dir))
	if errors.Is(err, ipfs.ErrNotFound) && dir == "/" {
		return nil, nil // the root always exists, even before anything is written
	}
	if err != nil {
		return nil, pathError(dir, err)
	}
	es := make([]walkEntry, 0, len(list))
	for _, le := range list {
		if !validElem(le.Name) || le.Name < first {
			continue // see names
		}
		e := walkEntry{name: le.Name, path: prefix + le.Name}
		fi := storagedriver.FileInfoFields{Path: e.path, IsDir: le.IsDir, Size: le.Size}
		fi.ModTime, _ = d.mtimes.Get(e.path) // as Stat has it
		e.fi = storagedriver.FileInfoInternal{FileInfoFields: fi}
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b walkEntry) int { return strings.Compare(a.name, b.name) })
	return es, nil
}

// A walkEntry is an entry of a directory walked, described when first asked more than
// its path if it was not described when listed. An entry removed since the listing is
// no directory, of no size; another failure to describe it is kept in err, for the walk
// to return.
type walkEntry struct {
	ctx        context.Context
	d          *driver
	name, path string
	fi         storagedriver.FileInfo // nil until described
	err        error
}

func (e *walkEntry) describe() storagedriver.FileInfo {
	if e.fi == nil {
		fi, err := e.d.Stat(e.ctx, e.path)
		switch {
		case err == nil:
			e.fi = fi
		case IsNotFound(err):
			e.fi = storagedriver.FileInfoInternal{FileInfoFields: storagedriver.FileInfoFields{Path: e.path}}
		default:
			e.err = err
			return storagedriver.FileInfoInternal{FileInfoFields: storagedriver.FileInfoFields{Path: e.path}}
		}
	}
	return e.fi
}

func (e *walkEntry) Path() string       { return e.path }
func (e *walkEntry) Size() int64        { return e.describe().Size() }
func (e *walkEntry) ModTime() time.Time { return e.describe().ModTime() }
func (e *walkEntry) IsDir() bool        { return e.describe().IsDir() }
