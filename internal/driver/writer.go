package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

func (d *driver) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	dir := d.spool.file(p)
	if !append {
		d.imports.dropUnder(p)
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("spool %s: %w", p, err)
		}
	}
	im, fresh, err := d.imports.attach(p, dir)
	if err != nil {
		return nil, err
	}
	w := &writer{d: d, path: p, size: im.size, im: im}
	if append && fresh {
		// Appending to committed content: start from it.
		if err := w.copyCommitted(ctx); err != nil {
			w.Cancel(ctx)
			return nil, err
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
	d    *driver
	path string
	size int64
	im   *importer

	closed, committed, cancelled bool
}

func (w *writer) Write(p []byte) (int, error) {
	if err := w.check(); err != nil {
		return 0, err
	}
	n, err := w.im.p.Write(p)
	if err != nil {
		err = fmt.Errorf("import upload %s: %w", w.path, err)
	}
	w.im.size += int64(n)
	w.size += int64(n)
	return n, err
}

func (w *writer) Size() int64 { return w.size }

// Close leaves the upload to the next writer, saved in its spool.
func (w *writer) Close() error {
	if w.closed {
		return errors.New("already closed")
	}
	w.closed = true
	if w.committed || w.cancelled {
		return nil
	}
	err := w.im.p.Sync()
	w.d.imports.detach(w.path, w.im)
	return err
}

func (w *writer) Cancel(context.Context) error {
	if w.closed {
		return errors.New("already closed")
	}
	if w.committed {
		return errors.New("already committed")
	}
	w.cancelled = true
	w.d.imports.drop(w.path, w.im)
	_, err := w.d.spool.remove(w.path)
	return err
}

func (w *writer) Commit(ctx context.Context) error {
	if err := w.check(); err != nil {
		return err
	}
	w.committed = true
	c, err := w.d.imports.finish(w.path, w.im)
	if err != nil {
		return fmt.Errorf("commit %s: %w", w.path, err)
	}
	if err := w.d.node.Link(ctx, w.d.mfs(w.path), c); err != nil {
		return fmt.Errorf("commit %s: %w", w.path, err)
	}
	w.d.touch(w.path)
	_, err = w.d.spool.remove(w.path)
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
