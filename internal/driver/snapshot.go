package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/base"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Snapshot returns a read-only driver over the registry as it is now: the IPFS directory
// that MFS holds under root at this moment, read by CID. A walk of the whole registry
// through it (the index's build at start-up) leaves nothing in MFS's caches, whose every
// directory MFS writes out again at its next checkpoint and when the node closes.
func Snapshot(ctx context.Context, node ipfs.Node, root string) (storagedriver.StorageDriver, error) {
	return newSnapshot(ctx, node, root, snapshotDirs)
}

// newSnapshot is Snapshot remembering the CIDs of at most limit directories.
func newSnapshot(ctx context.Context, node ipfs.Node, root string, limit int) (storagedriver.StorageDriver, error) {
	e, err := node.Stat(ctx, path.Join("/", root))
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", root, err)
	}
	dirs, err := lru.New[string, cid.Cid](limit)
	if err != nil {
		return nil, err
	}
	return &base.Base{StorageDriver: &snapshot{node: node, root: e.CID, dirs: dirs}}, nil
}

// snapshotDirs bounds how many directories a snapshot remembers the CIDs of. A walk reads
// a directory after its parent, so the directories it is in, which it resolves the next
// from, are among the last it read; more only held memory: 1<<17 of them, which 10,000
// images fill, took about 25 MiB.
const snapshotDirs = 1 << 12

var errReadOnly = errors.New("snapshot: read-only")

type snapshot struct {
	node ipfs.Node
	root cid.Cid                     // the directory at "/", kept apart: dir stops there
	dirs *lru.Cache[string, cid.Cid] // by driver path, below "/"
}

func (s *snapshot) Name() string { return Name + "-snapshot" }

// dir returns the CID of the directory at driver path p, resolving it from its parent's.
func (s *snapshot) dir(ctx context.Context, p string) (cid.Cid, error) {
	if c, ok := s.known(p); ok {
		return c, nil
	}
	parent, err := s.dir(ctx, path.Dir(p))
	if err != nil {
		return cid.Undef, err
	}
	e, err := s.node.Stat(ctx, "/ipfs/"+parent.String()+"/"+path.Base(p))
	if err != nil {
		return cid.Undef, pathError(p, err)
	}
	if !e.IsDir {
		return cid.Undef, storagedriver.PathNotFoundError{Path: p, DriverName: s.Name()}
	}
	s.dirs.Add(p, e.CID)
	return e.CID, nil
}

// known returns the CID of the directory at p if the snapshot remembers it.
func (s *snapshot) known(p string) (cid.Cid, bool) {
	if p == "/" {
		return s.root, true
	}
	return s.dirs.Get(p)
}

// ipfsPath returns the IPFS path of driver path p.
func (s *snapshot) ipfsPath(ctx context.Context, p string) (string, error) {
	if c, ok := s.known(p); ok {
		return "/ipfs/" + c.String(), nil
	}
	parent, err := s.dir(ctx, path.Dir(p))
	if err != nil {
		return "", err
	}
	return "/ipfs/" + parent.String() + "/" + path.Base(p), nil
}

func (s *snapshot) GetContent(ctx context.Context, p string) ([]byte, error) {
	r, err := s.Reader(ctx, p, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func (s *snapshot) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	ip, err := s.ipfsPath(ctx, p)
	if err != nil {
		return nil, err
	}
	r, err := s.node.Read(ctx, ip, offset)
	if err != nil {
		return nil, pathError(p, err)
	}
	return r, nil
}

func (s *snapshot) Stat(ctx context.Context, p string) (storagedriver.FileInfo, error) {
	ip, err := s.ipfsPath(ctx, p)
	if err != nil {
		return nil, err
	}
	e, err := s.node.Stat(ctx, ip)
	if err != nil {
		return nil, pathError(p, err)
	}
	if e.IsDir {
		s.dirs.Add(p, e.CID)
	}
	return storagedriver.FileInfoInternal{FileInfoFields: storagedriver.FileInfoFields{Path: p, IsDir: e.IsDir, Size: e.Size}}, nil
}

func (s *snapshot) List(ctx context.Context, p string) ([]string, error) {
	es, err := s.list(ctx, p)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = path.Join(p, e.Name)
	}
	return out, nil
}

func (s *snapshot) list(ctx context.Context, p string) ([]ipfs.Entry, error) {
	c, err := s.dir(ctx, p)
	if err != nil {
		return nil, err
	}
	es, err := s.node.List(ctx, "/ipfs/"+c.String())
	if err != nil {
		return nil, pathError(p, err)
	}
	for _, e := range es {
		if e.IsDir {
			s.dirs.Add(path.Join(p, e.Name), e.CID)
		}
	}
	return es, nil
}

// Walk walks by CID, as storagedriver.WalkFallback does but with one listing a
// directory and no Stat of each entry. A walk that starts after a hint is
// WalkFallback's.
func (s *snapshot) Walk(ctx context.Context, p string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	var opts storagedriver.WalkOptions
	for _, o := range options {
		o(&opts)
	}
	if opts.StartAfterHint != "" {
		return storagedriver.WalkFallback(ctx, s, p, f, options...)
	}
	_, err := s.walk(ctx, p, f)
	return err
}

// walk walks the directory p, and reports whether the walk goes on.
func (s *snapshot) walk(ctx context.Context, p string, f storagedriver.WalkFn) (bool, error) {
	es, err := s.list(ctx, p)
	if err != nil {
		return false, err
	}
	for _, e := range es { // sorted by name
		child := path.Join(p, e.Name)
		err := f(storagedriver.FileInfoInternal{FileInfoFields: storagedriver.FileInfoFields{Path: child, IsDir: e.IsDir, Size: e.Size}})
		switch {
		case err == nil && e.IsDir:
			if more, err := s.walk(ctx, child, f); err != nil || !more {
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

func (s *snapshot) PutContent(context.Context, string, []byte) error { return errReadOnly }

func (s *snapshot) Writer(context.Context, string, bool) (storagedriver.FileWriter, error) {
	return nil, errReadOnly
}

func (s *snapshot) Move(context.Context, string, string) error { return errReadOnly }

func (s *snapshot) Delete(context.Context, string) error { return errReadOnly }

func (s *snapshot) RedirectURL(*http.Request, string) (string, error) { return "", nil }
