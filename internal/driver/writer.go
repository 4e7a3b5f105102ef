package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/discoregistry/disco/internal/ack"
	"github.com/discoregistry/disco/internal/ipfs"
)

func (d *driver) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	defer memoOf(ctx).forget()
	dir := d.spool.file(p)
	if !append {
		d.imports.dropUnder(p)
		_, err := os.Lstat(dir)
		spooled := err == nil
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("spool %s: %w", p, err)
		}
		// A hold is made once the spool has the upload; a commit or cancel releases it
		// as it empties the spool, and the upload's removal whatever a crash in between
		// left: a new upload (every POST) finds none to release.
		if spooled {
			if err := ipfs.Release(ctx, d.node, d.mfs(p)); err != nil {
				return nil, err
			}
		}
	}
	im, fresh, err := d.imports.attach(p, dir, d.mfs(p))
	if err != nil {
		return nil, reportFull(ctx, err)
	}
	w := &writer{d: d, ctx: ctx, path: p, size: im.size, im: im}
	// Distribution does not always close a writer: a PATCH it refuses for its offset
	// leaves it open. Once the request is over, nothing will write to it any more: close
	// it then, before the request is answered if its edge tracks it.
	w.release = context.AfterFunc(ctx, func() { w.Close() })
	ack.AtEnd(ctx, func() { w.Close() })
	if append && fresh {
		// Appending to committed content: start from it.
		if err := w.copyCommitted(ctx); err != nil {
			w.Cancel(ctx)
			return nil, reportFull(ctx, err)
		}
	}
	return w, nil
}

// copyCommitted writes the committed content at w's path, if any.
func (w *writer) copyCommitted(ctx context.Context) error {
	r, err := w.d.Reader(ctx, w.path, 0)
	if errors.As(err, new(storagedriver.PathNotFoundError)) {
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(w, r)
	return err
}

// writer hands what it is given to its upload's importer; Commit links the result at its
// path.
type writer struct {
	d       *driver
	ctx     context.Context // of the request it writes for
	path    string
	size    int64
	im      *importer
	release func() bool // stops closing it when its request ends

	mu                           sync.Mutex // Close may come from the end of the request
	closed, committed, cancelled bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return 0, err
	}
	n, err := w.im.p.Write(p)
	if err != nil {
		err = reportFull(w.ctx, fmt.Errorf("import upload %s: %w", w.path, err))
	}
	w.im.size += int64(n)
	w.size += int64(n)
	return n, err
}

func (w *writer) Size() int64 { return w.size }

// Close leaves the upload to the next writer, saved in its spool. If it cannot save it,
// the request it writes for is not acknowledged: Distribution does not look at what Close
// returns.
func (w *writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("already closed")
	}
	w.closed = true
	w.release()
	if w.committed || w.cancelled {
		return nil
	}
	err := w.im.p.Sync()
	w.d.imports.detach(w.path, w.im)
	if err != nil {
		err = fmt.Errorf("save upload %s: %w", w.path, err)
		ack.Fail(w.ctx, err)
	}
	return err
}

// Cancel drops the upload, even once it is closed. After Commit, it removes what Commit
// linked: Distribution commits, closes, and then cancels an upload whose digest turns
// out wrong.
func (w *writer) Cancel(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.release()
	if w.committed {
		err := w.d.node.Remove(ctx, w.d.mfs(w.path))
		if errors.Is(err, ipfs.ErrNotFound) {
			err = nil
		}
		return err
	}
	if w.cancelled {
		return nil
	}
	w.cancelled = true
	w.d.imports.drop(w.path, w.im)
	_, err := w.d.spool.remove(w.path)
	return errors.Join(err, ipfs.Release(ctx, w.d.node, w.d.mfs(w.path)))
}

func (w *writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return err
	}
	w.release()
	w.committed = true
	c, held, err := w.d.imports.finish(w.path, w.im)
	if err != nil {
		return reportFull(ctx, fmt.Errorf("commit %s: %w", w.path, err))
	}
	if err := w.d.node.Link(ctx, w.d.mfs(w.path), c); err != nil {
		return reportFull(ctx, fmt.Errorf("commit %s: %w", w.path, err))
	}
	w.d.touch(w.path)
	_, err = w.d.spool.remove(w.path)
	if held { // linked, the upload needs its hold no more
		err = errors.Join(err, ipfs.Release(ctx, w.d.node, w.d.mfs(w.path)))
	}
	return err
}

func (w *writer) check() error {
	switch {
	case w.closed:
		return errors.New("already closed")
	case w.committed:
		return errors.New("already committed")
	case w.cancelled:
		return errors.New("already cancelled")
	}
	return nil
}
