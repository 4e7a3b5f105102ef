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
	if !append {
		d.imports.dropUnder(p)
		f, err := os.Create(name)
		if err != nil {
			return nil, fmt.Errorf("spool %s: %w", p, err)
		}
		f.Close()
	} else if _, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
		// Appending to committed content: start from it.
		if err := d.unspool(ctx, p, name); err != nil {
			return nil, err
		}
	}
	fi, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", p, err)
	}
	w := &writer{d: d, path: p, size: fi.Size()}
	if w.im, err = d.imports.attach(p, name, w.size); err != nil || w.im != nil {
		return w, err
	}
	// No import as the data arrives: spool it here, and import the spool at Commit.
	if w.file, err = os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0); err != nil {
		return nil, fmt.Errorf("spool %s: %w", p, err)
	}
	return w, nil
}

// unspool copies the committed content at p, if any, to the spool file name.
func (d *driver) unspool(ctx context.Context, p, name string) error {
	r, err := d.Reader(ctx, p, 0)
	if errors.As(err, new(storagedriver.PathNotFoundError)) {
		r = io.NopCloser(new(emptyReader))
	} else if err != nil {
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

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, io.EOF }

// writer hands what it is given to its importer, or spools it itself when it has none;
// Commit links the result at its path.
type writer struct {
	d    *driver
	path string
	size int64
	im   *importer // nil when the upload is spooled here and imported at Commit
	file *os.File  // the spool, when im is nil

	closed, committed, cancelled bool
}

func (w *writer) Write(p []byte) (int, error) {
	if err := w.check(); err != nil {
		return 0, err
	}
	var n int
	var err error
	if w.im != nil {
		if n, err = w.im.p.Write(p); err != nil {
			err = fmt.Errorf("import upload %s: %w", w.path, err)
		}
		w.im.size += int64(n)
	} else {
		n, err = w.file.Write(p)
	}
	w.size += int64(n)
	return n, err
}

func (w *writer) Size() int64 { return w.size }

// Close leaves what was written spooled, for a writer that appends to it.
func (w *writer) Close() error {
	if w.closed {
		return errors.New("already closed")
	}
	w.closed = true
	switch {
	case w.im != nil:
		err := w.im.p.Sync()
		w.d.imports.detach(w.path, w.im)
		return err
	case w.file != nil:
		return w.file.Close()
	}
	return nil
}

func (w *writer) Cancel(context.Context) error {
	if w.closed {
		return errors.New("already closed")
	}
	if w.committed {
		return errors.New("already committed")
	}
	w.cancelled = true
	w.release()
	return os.Remove(w.d.spool.file(w.path))
}

func (w *writer) Commit(ctx context.Context) error {
	if err := w.check(); err != nil {
		return err
	}
	c, err := w.result(ctx)
	if err != nil {
		return fmt.Errorf("commit %s: %w", w.path, err)
	}
	if err := w.d.node.Link(ctx, w.d.mfs(w.path), c); err != nil {
		return fmt.Errorf("commit %s: %w", w.path, err)
	}
	w.d.touch(w.path)
	w.committed = true
	return os.Remove(w.d.spool.file(w.path))
}

// result returns the CID of the upload: its importer's, or the spool's, imported now.
func (w *writer) result(ctx context.Context) (cid.Cid, error) {
	if w.im != nil {
		im := w.im
		w.im = nil
		return w.d.imports.finish(w.path, im)
	}
	w.file.Close()
	w.file = nil
	f, err := os.Open(w.d.spool.file(w.path))
	if err != nil {
		return cid.Undef, err
	}
	defer f.Close()
	return w.d.node.Add(ctx, files.NewReaderFile(f))
}

// release stops the importer or closes the spool.
func (w *writer) release() {
	if w.im != nil {
		w.d.imports.drop(w.path, w.im)
		w.im = nil
	}
	if w.file != nil {
		w.file.Close()
		w.file = nil
	}
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
