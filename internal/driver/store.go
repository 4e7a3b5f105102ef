package driver

import (
	"context"
	"errors"
	"fmt"
	"io"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/ipfs/go-cid"
)

// Store is the registry's storage as Disco's own code uses it: Distribution's storage
// driver, with what only content in IPFS allows. Distribution, global addressing and the
// API all write through one Store, so that what wraps it (a cache, several nodes) sees
// every write.
type Store interface {
	storagedriver.StorageDriver
	// Link places the IPFS content c, a file or a directory tree, at the path p, replacing
	// what was there.
	Link(ctx context.Context, p string, c cid.Cid) error
	// CID returns the CID of the content at p.
	CID(ctx context.Context, p string) (cid.Cid, error)
}

var _ Store = (*Driver)(nil)

// Link implements Store.
func (d *Driver) Link(ctx context.Context, p string, c cid.Cid) error {
	if !storagedriver.PathRegexp.MatchString(p) {
		return storagedriver.InvalidPathError{Path: p, DriverName: Name}
	}
	in := d.inner()
	defer memoOf(ctx).forget()
	if err := in.node.Link(ctx, in.mfs(p), c); err != nil {
		return reportFull(ctx, pathError(p, err))
	}
	in.touch(p)
	return nil
}

// CID implements Store.
func (d *Driver) CID(ctx context.Context, p string) (cid.Cid, error) {
	if !storagedriver.PathRegexp.MatchString(p) {
		return cid.Undef, storagedriver.InvalidPathError{Path: p, DriverName: Name}
	}
	in := d.inner()
	e, err := in.node.Stat(ctx, in.mfs(p))
	if err != nil {
		return cid.Undef, pathError(p, err)
	}
	return e.CID, nil
}

func (d *Driver) inner() *driver { return d.StorageDriver.(*driver) }

// ReadFile reads the whole file at p from d, refusing one larger than limit bytes.
func ReadFile(ctx context.Context, d storagedriver.StorageDriver, p string, limit int64) ([]byte, error) {
	r, err := d.Reader(ctx, p, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, limit)
	}
	return b, nil
}

// Exists reports whether there is anything at p in d.
func Exists(ctx context.Context, d storagedriver.StorageDriver, p string) (bool, error) {
	_, err := d.Stat(ctx, p)
	if IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// IsNotFound reports an error about a path that does not exist.
func IsNotFound(err error) bool {
	return errors.As(err, new(storagedriver.PathNotFoundError))
}
