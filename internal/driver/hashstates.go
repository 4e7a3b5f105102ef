package driver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// Distribution saves the state of an upload's digest after each request, in files below
// <repository>/_uploads/<id>/hashstates, and reads it back on the next request. They are
// state of an upload in progress like the rest, and live in the spool, beside its data:
// in MFS, each would cost a request its changes persisted, a PATCH that changes nothing
// else among them. Lost, a hash state costs a full read of the upload when it is
// committed, which is what Distribution does without one.

// uploadOf returns the upload directory, <repository>/_uploads/<id>, that p is at or
// below a hash states directory of, if it is. A repository name's components start with
// a letter or digit, so "_uploads" is Distribution's own.
func uploadOf(p string) (string, bool) {
	els := strings.Split(p, "/")
	for i := 0; i+2 < len(els); i++ {
		if els[i] == "_uploads" && els[i+2] == "hashstates" {
			return strings.Join(els[:i+2], "/"), true
		}
	}
	return "", false
}

func isHashState(p string) bool {
	_, ok := uploadOf(p)
	return ok
}

// putHashState writes the hash state p, durably, as the upload's other state, if the
// upload is in the spool: Distribution saves one as it closes a writer, also after the
// upload was cancelled, and that one would stay for good.
func (s *spool) putHashState(p string, b []byte) error {
	upload, _ := uploadOf(p)
	f := s.file(p)
	s.mu.RLock()
	_, err := os.Stat(s.file(upload))
	if err == nil {
		err = os.MkdirAll(filepath.Dir(f), 0o700)
	}
	s.mu.RUnlock()
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the upload is gone
	}
	if err == nil {
		err = writeDurably(f, b)
	}
	if err != nil {
		return fmt.Errorf("spool %s: %w", p, err)
	}
	return nil
}

// hashState returns the hash state p.
func (s *spool) hashState(p string) ([]byte, error) {
	b, err := os.ReadFile(s.file(p))
	if err != nil {
		return nil, hashStateError(p, err)
	}
	return b, nil
}

// hashStateReader returns the hash state p from offset on.
func (s *spool) hashStateReader(p string, offset int64) (io.ReadCloser, error) {
	b, err := s.hashState(p)
	if err != nil {
		return nil, err
	}
	if offset > int64(len(b)) {
		return nil, storagedriver.InvalidOffsetError{Path: p, Offset: offset, DriverName: Name}
	}
	return io.NopCloser(bytes.NewReader(b[offset:])), nil
}

// statHashState describes the hash state, or hash states directory, p.
func (s *spool) statHashState(p string) (storagedriver.FileInfo, error) {
	fi, err := os.Stat(s.file(p))
	if err != nil {
		return nil, hashStateError(p, err)
	}
	f := storagedriver.FileInfoFields{Path: p, IsDir: fi.IsDir(), ModTime: fi.ModTime()}
	if !f.IsDir {
		f.Size = fi.Size()
	}
	return storagedriver.FileInfoInternal{FileInfoFields: f}, nil
}

// hashStateNames returns the names in the hash states directory p, sorted, leaving out
// a write in progress (writeDurably's newSuffix).
func (s *spool) hashStateNames(p string) ([]string, error) {
	es, err := os.ReadDir(s.file(p))
	if err != nil {
		return nil, hashStateError(p, err)
	}
	var names []string
	for _, e := range es {
		if !strings.HasSuffix(e.Name(), newSuffix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func hashStateError(p string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return storagedriver.PathNotFoundError{Path: p, DriverName: Name}
	}
	return fmt.Errorf("spool %s: %w", p, err)
}
