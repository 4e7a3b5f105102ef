package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
)

// spool keeps uploads in progress as local files, one per driver path, under dir.
type spool struct{ dir string }

// file returns the local file for driver path p. Cleaning p as an absolute path keeps it
// inside dir whatever p holds.
func (s spool) file(p string) string {
	return filepath.Join(s.dir, filepath.FromSlash(path.Clean("/"+p)))
}

// remove removes what is spooled at or below p, and reports whether there was any.
func (s spool) remove(p string) (bool, error) {
	f := s.file(p)
	if _, err := os.Lstat(f); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err := os.RemoveAll(f); err != nil {
		return false, fmt.Errorf("remove upload %s: %w", p, err)
	}
	return true, nil
}

func (d *driver) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	name := d.spool.file(p)
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return nil, fmt.Errorf("spool %s: %w", p, err)
	}
	flags := os.O_RDWR | os.O_CREATE
	if !append {
		flags |= os.O_TRUNC
	} else if _, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
		// Appending to committed content: start from it.
		if err := d.unspool(ctx, p, name); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(name, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", p, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &writer{d: d, path: p, file: f, size: size, im: d.imports.attach(p, size)}, nil
}

// unspool copies the committed content at p, if any, to the spool file name.
func (d *driver) unspool(ctx context.Context, p, name string) error {
	r, err := d.Reader(ctx, p, 0)
	if errors.As(err, new(storagedriver.PathNotFoundError)) {
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spool %s: %w", p, err)
	}
	_, err = io.Copy(f, r)
	return errors.Join(err, f.Close())
}

// writer spools what it is given; Commit imports it into IPFS and links it at its path.
type writer struct {
	d    *driver
	path string
	file *os.File
	size int64
	im   *importer // nil when the upload is imported at Commit

	closed, committed, cancelled bool
}

func (w *writer) Write(p []byte) (int, error) {
	if err := w.check(); err != nil {
		return 0, err
	}
	n, err := w.file.Write(p)
	w.size += int64(n)
	if w.im != nil {
		if _, ierr := w.im.pw.Write(p[:n]); ierr != nil {
			w.d.imports.drop(w.path, w.im) // Commit imports the spool instead
			w.im = nil
		} else {
			w.im.size += int64(n)
		}
	}
	return n, err
}

func (w *writer) Size() int64 { return w.size }

func (w *writer) Close() error {
	if w.closed {
		return errors.New("already closed")
	}
	w.closed = true
	if w.file == nil {
		return nil
	}
	if w.im != nil {
		w.d.imports.detach(w.path, w.im)
	}
	return w.file.Close()
}

func (w *writer) Cancel(context.Context) error {
	if w.closed {
		return errors.New("already closed")
	}
	if w.committed {
		return errors.New("already committed")
	}
	w.cancelled = true
	if w.im != nil {
		w.d.imports.drop(w.path, w.im)
	}
	w.file.Close()
	w.file = nil
	return os.Remove(w.d.spool.file(w.path))
}

func (w *writer) Commit(ctx context.Context) error {
	if err := w.check(); err != nil {
		return err
	}
	c := cid.Undef
	if w.im != nil {
		c = w.d.imports.finish(w.path, w.im, w.size)
		w.im = nil
	}
	if !c.Defined() {
		if _, err := w.file.Seek(0, io.SeekStart); err != nil {
			return err
		}
		var err error
		if c, err = w.d.node.Add(ctx, files.NewReaderFile(w.file)); err != nil {
			return fmt.Errorf("commit %s: %w", w.path, err)
		}
	}
	if err := w.d.node.Link(ctx, w.d.mfs(w.path), c); err != nil {
		return fmt.Errorf("commit %s: %w", w.path, err)
	}
	w.d.touch(w.path)
	w.committed = true
	w.file.Close()
	w.file = nil
	return os.Remove(w.d.spool.file(w.path))
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
