// Package cache keeps a copy of the registry in a second storage, any of Distribution's
// storage drivers (an S3 bucket, a directory), the original Disco's secondary cache.
// Every write that stores something goes to IPFS first, then to the cache, before it is
// acknowledged; uploads in progress stay in IPFS alone. Reads go to the cache first and
// fall back to IPFS, copying what the cache lacks into it; a cache that fails or hangs is
// left out of reads for a while. A blob in the cache may be served by redirecting the
// client there.
package cache

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/base"
	storagemiddleware "github.com/distribution/distribution/v3/registry/storage/driver/middleware"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/middleware/redirect"
	"github.com/ipfs/go-cid"
	"golang.org/x/sync/singleflight"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/ipfs"
)

// Store is a driver.Store over IPFS (primary) with a copy in a cache.
type Store struct {
	baseEmbed
	s *store
}

type baseEmbed struct{ base.Base }

type store struct {
	primary  driver.Store
	cache    storagedriver.StorageDriver
	redirect storagedriver.StorageDriver // the cache, redirecting; nil without redirect
	log      *slog.Logger

	repairs singleflight.Group // by path
	slots   chan struct{}      // bounds repairs at once

	downUntil atomic.Int64 // reads skip the cache until then, in Unix nanoseconds
}

// readTimeout bounds how long a read waits for the cache (for a Reader, until it starts
// answering) before IPFS answers it instead: a cache that hangs must not hang pulls that
// IPFS can serve. A listing, which may take many requests, has listTimeout.
const (
	readTimeout = 5 * time.Second
	listTimeout = time.Minute
)

// downFor is how long reads skip a cache that failed one: they go to IPFS at once rather
// than each wait for the cache to fail again. Writes still go to the cache, and fail.
const downFor = 10 * time.Second

// errCacheDown is what a read that skipped the cache got from it.
var errCacheDown = errors.New("cache skipped: it failed a read less than " + downFor.String() + " ago")

var _ driver.Store = (*Store)(nil)

// New returns a Store that copies what primary stores into cache. With redirect a base
// URL, blobs the cache holds are served by redirecting clients to redirect plus their
// path, with Distribution's redirect middleware.
func New(ctx context.Context, primary driver.Store, cache storagedriver.StorageDriver, redirect string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &store{primary: primary, cache: cache, log: log, slots: make(chan struct{}, 4)}
	if redirect != "" {
		r, err := storagemiddleware.Get(ctx, "redirect", map[string]any{"baseurl": redirect}, cache)
		if err != nil {
			return nil, fmt.Errorf("storage.ipfs.redirect: %w", err)
		}
		s.redirect = r
	}
	return &Store{baseEmbed: baseEmbed{base.Base{StorageDriver: s}}, s: s}, nil
}

// Link places c at p in IPFS, then copies what it holds into the cache.
func (c *Store) Link(ctx context.Context, p string, id cid.Cid) error {
	if err := c.s.primary.Link(ctx, p, id); err != nil {
		return err
	}
	return c.s.replicate(ctx, p)
}

// CID returns the CID of what IPFS holds at p.
func (c *Store) CID(ctx context.Context, p string) (cid.Cid, error) { return c.s.primary.CID(ctx, p) }

// NodeFor passes on the placement of the primary over several nodes, if it has one; nil
// otherwise.
func (c *Store) NodeFor(p string) ipfs.Node {
	if pl, ok := c.s.primary.(interface{ NodeFor(string) ipfs.Node }); ok {
		return pl.NodeFor(p)
	}
	return nil
}

func (s *store) Name() string { return driver.Name }

// transient reports a path that only IPFS keeps: an upload in progress.
func transient(p string) bool {
	return strings.Contains(p, "/_uploads/") || strings.HasSuffix(p, "/_uploads")
}

func (s *store) GetContent(ctx context.Context, p string) ([]byte, error) {
	if !transient(p) {
		b, err := cacheRead(ctx, s, p, readTimeout, func(ctx context.Context) ([]byte, error) { return s.cache.GetContent(ctx, p) })
		if err == nil {
			return b, nil
		}
	}
	b, err := s.primary.GetContent(ctx, p)
	if err == nil && !transient(p) && s.cacheUp() {
		ctx, cancel := context.WithTimeout(ctx, readTimeout)
		defer cancel()
		if err := s.cache.PutContent(ctx, p, b); err != nil {
			s.log.Warn("cache repair failed", "path", p, "err", err)
		}
	}
	return b, err
}

// cacheUp reports whether reads go to the cache: it has not failed one lately.
func (s *store) cacheUp() bool { return time.Now().UnixNano() >= s.downUntil.Load() }

// cacheRead reads p from the cache with read, within timeout, unless the cache failed a
// read lately.
func cacheRead[T any](ctx context.Context, s *store, p string, timeout time.Duration, read func(context.Context) (T, error)) (T, error) {
	if !s.cacheUp() {
		var zero T
		return zero, errCacheDown
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := read(rctx)
	if err != nil {
		s.missed(ctx, p, err)
	}
	return v, err
}

// cacheReader opens p in the cache at offset, as cacheRead reads: the cache has
// readTimeout to start answering, then the reader is the caller's until it closes it.
func (s *store) cacheReader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if !s.cacheUp() {
		return nil, errCacheDown
	}
	rctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(readTimeout, func() { cancel(context.DeadlineExceeded) })
	r, err := s.cache.Reader(rctx, p, offset)
	if !timer.Stop() && err == nil { // it answered as its time ran out
		r.Close()
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel(nil)
		s.missed(ctx, p, err)
		return nil, err
	}
	return cancelOnClose{r, cancel}, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c cancelOnClose) Close() error {
	defer c.cancel(nil)
	return c.ReadCloser.Close()
}

// missed handles a read the cache did not answer with p: one it failed, not for want of
// p nor because its caller gave up, is logged, and reads skip the cache for downFor.
func (s *store) missed(ctx context.Context, p string, err error) {
	if ctx.Err() != nil || answered(err) {
		return
	}
	s.downUntil.Store(time.Now().Add(downFor).UnixNano())
	s.log.Warn("cache read failed: reading IPFS, and only IPFS for "+downFor.String(), "path", p, "err", err)
}

// answered reports an error the cache answers with when it works: p is not there, or
// is not what was asked of it.
func answered(err error) bool {
	return driver.IsNotFound(err) ||
		errors.As(err, new(storagedriver.InvalidPathError)) ||
		errors.As(err, new(storagedriver.InvalidOffsetError))
}

func (s *store) PutContent(ctx context.Context, p string, b []byte) error {
	if err := s.primary.PutContent(ctx, p, b); err != nil {
		return err
	}
	if transient(p) {
		return nil
	}
	if err := s.cache.PutContent(ctx, p, b); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

func (s *store) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if !transient(p) {
		if r, err := s.cacheReader(ctx, p, offset); err == nil {
			return r, nil
		}
	}
	r, err := s.primary.Reader(ctx, p, offset)
	if err == nil && !transient(p) {
		s.repairLater(p)
	}
	return r, err
}

// repairLater copies p from IPFS into the cache in the background, once for concurrent
// misses, a few at a time.
func (s *store) repairLater(p string) {
	if !s.cacheUp() {
		return
	}
	go s.repairs.Do(p, func() (any, error) {
		s.slots <- struct{}{}
		defer func() { <-s.slots }()
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		if _, err := s.cache.Stat(ctx, p); err == nil {
			return nil, nil // another repair was first
		}
		if err := s.copyFile(ctx, p); err != nil {
			s.log.Warn("cache repair failed", "path", p, "err", err)
		}
		return nil, nil
	})
}

// Writer writes to IPFS alone: uploads in progress are not copied. The blob they make is,
// when Distribution moves it in place.
func (s *store) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	return s.primary.Writer(ctx, p, append)
}

func (s *store) Stat(ctx context.Context, p string) (storagedriver.FileInfo, error) {
	if !transient(p) {
		if fi, err := cacheRead(ctx, s, p, readTimeout, func(ctx context.Context) (storagedriver.FileInfo, error) { return s.cache.Stat(ctx, p) }); err == nil {
			return fi, nil
		}
	}
	return s.primary.Stat(ctx, p)
}

// List lists what either holds: a cache filled after its registry was, or an IPFS node
// started afresh, lacks some.
func (s *store) List(ctx context.Context, p string) ([]string, error) {
	fromIPFS, perr := s.primary.List(ctx, p)
	if transient(p) {
		return fromIPFS, perr
	}
	fromCache, cerr := cacheRead(ctx, s, p, listTimeout, func(ctx context.Context) ([]string, error) { return s.cache.List(ctx, p) })
	if perr != nil && cerr != nil {
		if driver.IsNotFound(perr) {
			return nil, perr
		}
		return nil, errors.Join(perr, cerr)
	}
	all := append(fromIPFS, fromCache...)
	slices.Sort(all)
	return slices.Compact(all), nil
}

func (s *store) Move(ctx context.Context, src, dst string) error {
	if err := s.primary.Move(ctx, src, dst); err != nil {
		return err
	}
	if !transient(src) {
		if err := s.cache.Delete(ctx, src); err != nil && !driver.IsNotFound(err) {
			return fmt.Errorf("cache: %w", err)
		}
	}
	return s.replicate(ctx, dst)
}

func (s *store) Delete(ctx context.Context, p string) error {
	perr := s.primary.Delete(ctx, p)
	if perr != nil && !driver.IsNotFound(perr) {
		return perr
	}
	cerr := s.cache.Delete(ctx, p)
	switch {
	case cerr == nil:
		return nil
	case !driver.IsNotFound(cerr):
		return fmt.Errorf("cache: %w", cerr)
	}
	return perr // found nowhere, or deleted in IPFS
}

// RedirectURL redirects a client to a blob the cache holds, when storage.ipfs.redirect
// is set; otherwise the registry serves the blob itself.
func (s *store) RedirectURL(r *http.Request, p string) (string, error) {
	if s.redirect == nil {
		return "", nil
	}
	if _, err := cacheRead(r.Context(), s, p, readTimeout, func(ctx context.Context) (storagedriver.FileInfo, error) { return s.cache.Stat(ctx, p) }); err != nil {
		s.repairLater(p)
		return "", nil
	}
	return s.redirect.RedirectURL(r, p)
}

func (s *store) Walk(ctx context.Context, p string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	return storagedriver.WalkFallback(ctx, s, p, f, options...)
}

// replicate copies what IPFS holds at p, a file or a directory tree, into the cache.
func (s *store) replicate(ctx context.Context, p string) error {
	if transient(p) {
		return nil
	}
	fi, err := s.primary.Stat(ctx, p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return s.copyFile(ctx, p)
	}
	var mu sync.Mutex
	var errs []error
	err = storagedriver.WalkFallback(ctx, s.primary, p, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			return nil
		}
		if err := s.copyFile(ctx, fi.Path()); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		return nil
	})
	if err = errors.Join(append(errs, err)...); err != nil {
		return fmt.Errorf("cache %s: %w", p, err)
	}
	return nil
}

// copyFile copies the file p from IPFS into the cache: into a file of its own first,
// moved in place once whole, so that nobody reads a copy half made (a filesystem cache
// writes files in place).
func (s *store) copyFile(ctx context.Context, p string) error {
	r, err := s.primary.Reader(ctx, p, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	tmp := path.Join(copies, rand.Text())
	w, err := s.cache.Writer(ctx, tmp, false)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		return errors.Join(err, w.Cancel(ctx))
	}
	if err := w.Commit(ctx); err != nil {
		return errors.Join(err, w.Close())
	}
	if err := w.Close(); err != nil {
		return err
	}
	return s.cache.Move(ctx, tmp, p)
}

// copies is the cache's directory for copies being made, outside Distribution's paths.
const copies = "/docker/registry/v2/disco-copies"

// Only is the cache as the registry's whole storage, with no IPFS node
// (storage.ipfs.cacheonly): what needs IPFS is not supported.
func Only(cache storagedriver.StorageDriver) driver.Store {
	return &only{baseEmbed{base.Base{StorageDriver: cache}}}
}

type only struct{ baseEmbed }

// errNoIPFS is what a cache-only registry answers to what needs an IPFS node.
var errNoIPFS = errors.New("no IPFS node: storage.ipfs.cacheonly is set")

func (*only) Link(context.Context, string, cid.Cid) error { return errNoIPFS }

func (*only) CID(context.Context, string) (cid.Cid, error) { return cid.Undef, errNoIPFS }
