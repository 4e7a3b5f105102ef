// Package driver is the "ipfs" storage driver for the Distribution library. The registry's
// files live in the MFS of an IPFS node, at Distribution's usual paths. Uploads are
// imported chunk by chunk while they arrive, with Disco's fixed import parameters, and
// joined into one file when they are committed, so a blob's CID depends on its bytes only;
// between requests, an upload's state is kept in a local directory.
package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/base"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/ipfs/boxo/files"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Name is the driver's name in Distribution's configuration (storage: ipfs).
const Name = "ipfs"

// Parameters the driver reads. Disco's main puts them in the storage parameters it hands to
// Distribution; ParamNode carries the live node, not a YAML value.
const (
	ParamStore   = "disco.store"   // a Store to use as it is, with no other parameter
	ParamNode    = "disco.node"    // ipfs.Node
	ParamRoot    = "rootdirectory" // MFS directory above Distribution's paths; default "/"
	ParamUploads = "disco.uploads" // local directory for uploads in progress
)

func init() {
	factory.Register(Name, driverFactory{})
}

type driverFactory struct{}

func (driverFactory) Create(_ context.Context, params map[string]any) (storagedriver.StorageDriver, error) {
	if s, ok := params[ParamStore].(Store); ok {
		return s, nil
	}
	node, ok := params[ParamNode].(ipfs.Node)
	if !ok {
		return nil, fmt.Errorf("%s driver: parameter %s must hold an IPFS node", Name, ParamNode)
	}
	uploads, ok := params[ParamUploads].(string)
	if !ok || uploads == "" {
		return nil, fmt.Errorf("%s driver: parameter %s must name a directory", Name, ParamUploads)
	}
	root, _ := params[ParamRoot].(string)
	return New(node, root, uploads)
}

// Driver is the ipfs storage driver.
type Driver struct {
	baseEmbed
}

type baseEmbed struct {
	base.Base
}

// New returns a driver that keeps the registry under root in node's MFS and the state of
// uploads in progress in the local directory uploads.
func New(node ipfs.Node, root, uploads string) (*Driver, error) {
	if root == "" {
		root = "/"
	}
	if !path.IsAbs(root) {
		return nil, fmt.Errorf("%s driver: %s %q is not an absolute path", Name, ParamRoot, root)
	}
	if err := os.MkdirAll(uploads, 0o700); err != nil {
		return nil, fmt.Errorf("%s driver: %w", Name, err)
	}
	mtimes, err := lru.New[string, time.Time](maxMtimes)
	if err != nil {
		return nil, err
	}
	sp := &spool{dir: filepath.Clean(uploads)}
	if err := sp.pruneAll(); err != nil {
		return nil, fmt.Errorf("%s driver: %w", Name, err)
	}
	d := &driver{node: node, root: path.Clean(root), spool: sp, mtimes: mtimes,
		imports: &importers{node: node, spool: sp, m: map[string]*importer{}}}
	return &Driver{baseEmbed{base.Base{StorageDriver: d}}}, nil
}

// maxMtimes bounds the modification times a driver remembers. Each takes about 300
// bytes, its path included, in five objects the garbage collector scans.
const maxMtimes = 1 << 12

type driver struct {
	node  ipfs.Node
	root  string
	spool *spool
	// mtimes remembers when this process last wrote a path. MFS files carry no
	// timestamps, on purpose: a timestamp would change the CID of the same bytes.
	// Distribution does not read modification times; the map serves Stat.
	mtimes *lru.Cache[string, time.Time]
	// imports are the imports of uploads in progress.
	imports *importers
}

func (d *driver) Name() string { return Name }

// mfs maps a driver path to its MFS path.
func (d *driver) mfs(p string) string { return path.Join(d.root, p) }

func (d *driver) touch(p string) { d.mtimes.Add(p, time.Now()) }

// pathError maps the node's errors to the ones Distribution expects.
func pathError(p string, err error) error {
	if errors.Is(err, ipfs.ErrNotFound) {
		return storagedriver.PathNotFoundError{Path: p, DriverName: Name}
	}
	return err
}

func (d *driver) GetContent(ctx context.Context, p string) ([]byte, error) {
	if isHashState(p) {
		return d.spool.hashState(p)
	}
	m := memoOf(ctx)
	if b, ok := m.content(memoKey{d, p}); ok {
		return b, nil
	}
	r, err := d.Reader(ctx, p, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err == nil {
		m.keepContent(memoKey{d, p}, b)
	}
	return b, err
}

func (d *driver) PutContent(ctx context.Context, p string, content []byte) error {
	if isHashState(p) {
		return d.spool.putHashState(p, content)
	}
	defer memoOf(ctx).forget()
	c, err := d.node.Add(ctx, files.NewBytesFile(content))
	if err != nil {
		return reportFull(ctx, err)
	}
	if err := d.node.Link(ctx, d.mfs(p), c); err != nil {
		return reportFull(ctx, pathError(p, err))
	}
	d.touch(p)
	return nil
}

func (d *driver) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, storagedriver.InvalidOffsetError{Path: p, Offset: offset, DriverName: Name}
	}
	if isHashState(p) {
		return d.spool.hashStateReader(p, offset)
	}
	r, err := d.node.Read(ctx, d.mfs(p), offset)
	if err != nil {
		return nil, pathError(p, err)
	}
	return r, nil
}

func (d *driver) Stat(ctx context.Context, p string) (storagedriver.FileInfo, error) {
	if isHashState(p) {
		return d.spool.statHashState(p)
	}
	m := memoOf(ctx)
	if fi, ok := m.stat(memoKey{d, p}); ok {
		return fi, nil
	}
	e, err := d.node.Stat(ctx, d.mfs(p))
	if err != nil {
		return nil, pathError(p, err)
	}
	fi := storagedriver.FileInfoFields{Path: p, IsDir: e.IsDir, Size: e.Size}
	fi.ModTime, _ = d.mtimes.Get(p)
	m.keepStat(memoKey{d, p}, storagedriver.FileInfoInternal{FileInfoFields: fi})
	return storagedriver.FileInfoInternal{FileInfoFields: fi}, nil
}

func (d *driver) List(ctx context.Context, p string) ([]string, error) {
	names, err := d.names(ctx, p)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(names))
	for i, name := range names {
		out[i] = path.Join(p, name)
	}
	return out, nil
}

// names returns the names in the directory p, sorted.
func (d *driver) names(ctx context.Context, p string) ([]string, error) {
	if isHashState(p) {
		return d.spool.hashStateNames(p)
	}
	names, err := ipfs.Names(ctx, d.node, d.mfs(p))
	if errors.Is(err, ipfs.ErrNotFound) && p == "/" {
		return []string{}, nil // the root always exists, even before anything is written
	}
	if err != nil {
		return nil, pathError(p, err)
	}
	// A name that is not a path element ("", ".", "..", "a/b") cannot be one Disco wrote;
	// only content from the network could hold it. Listed, it would send Distribution's
	// walks round in circles or out of the directory.
	return slices.DeleteFunc(names, func(name string) bool { return !validElem(name) }), nil
}

func validElem(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

func (d *driver) Move(ctx context.Context, src, dst string) error {
	defer memoOf(ctx).forget()
	if err := d.node.Move(ctx, d.mfs(src), d.mfs(dst)); err != nil {
		return reportFull(ctx, pathError(src, err))
	}
	d.touch(dst)
	return nil
}

func (d *driver) Delete(ctx context.Context, p string) error {
	defer memoOf(ctx).forget()
	d.imports.dropUnder(p)
	spooled, err := d.spool.remove(p)
	if err != nil {
		return err
	}
	if err := ipfs.Release(ctx, d.node, d.mfs(p)); err != nil {
		return reportFull(ctx, err)
	}
	err = d.node.Remove(ctx, d.mfs(p))
	if errors.Is(err, ipfs.ErrNotFound) && spooled {
		return nil
	}
	return reportFull(ctx, pathError(p, err))
}

// RedirectURL returns "": blobs are served by the registry itself.
func (d *driver) RedirectURL(*http.Request, string) (string, error) { return "", nil }
