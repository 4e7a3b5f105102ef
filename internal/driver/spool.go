package driver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
	"golang.org/x/sync/errgroup"

	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/layout"
)

// spool keeps the state of uploads in progress in local directories, one per driver path,
// under dir. Directories left empty by a finished or removed upload are removed too: the
// directories of every repository ever pushed would stay otherwise.
type spool struct {
	dir string
	// mu is held shared while directories are made, exclusively while empty ones are
	// removed, so that no upload makes its directory in one being removed.
	mu sync.RWMutex
}

// file returns the local directory for driver path p. Cleaning p as an absolute path keeps
// it inside dir whatever p holds.
func (s *spool) file(p string) string {
	return filepath.Join(s.dir, filepath.FromSlash(path.Clean("/"+p)))
}

// mkdir makes the spool directory dir and those above it.
func (s *spool) mkdir(dir string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return os.MkdirAll(dir, 0o700)
}

// remove removes what is spooled at or below p, and reports whether there was any.
func (s *spool) remove(p string) (bool, error) {
	f := s.file(p)
	if _, err := os.Lstat(f); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err := os.RemoveAll(f); err != nil {
		return false, fmt.Errorf("remove upload %s: %w", p, err)
	}
	s.prune(filepath.Dir(f))
	return true, nil
}

// prune removes dir and the directories above it while they are empty, up to the
// repositories directory, which every upload is below: making and removing it for each
// upload would only cost.
func (s *spool) prune(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stop := s.file(layout.Repositories())
	for ; dir != stop && strings.HasPrefix(dir, s.dir+string(filepath.Separator)); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil { // not empty, or gone
			return
		}
	}
}

// pruneAll removes every empty directory below s.dir: those a Disco that did not prune
// left behind.
func (s *spool) pruneAll() error {
	var dirs []string
	err := filepath.WalkDir(s.dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() && p != s.dir {
			dirs = append(dirs, p)
		}
		return err
	})
	for _, d := range slices.Backward(dirs) { // below before above
		os.Remove(d) // fails unless empty
	}
	if err != nil {
		return fmt.Errorf("uploads %s: %w", s.dir, err)
	}
	return nil
}

// spooled is an upload in progress as an importer holds it, and as its spool directory
// keeps it between requests: the chunks added so far, in the file "parts" (one CID a
// line, appended to), and the chunk in progress, in the file "chunk" (the number of parts
// it follows, 8 bytes big-endian, then its bytes), replaced whole. A crash between the two
// writes leaves parts that "chunk" does not count yet; they are dropped.
type spooled struct {
	dir   string
	hold  string // what the node holds the upload's chunks under (see ipfs.Holder)
	parts []ipfs.Part
	saved int    // parts written to the parts file
	held  int    // parts the node holds (see save)
	chunk []byte // the chunk in progress

	// Chunks are added addsInFlight at a time, so that one waiting on the disk does not
	// hold up the next: adds runs them. Their buffers, of the chunk size, are made as
	// they are needed (most uploads are small) and kept in free when not in use.
	adds    *errgroup.Group
	free    chan []byte
	buffers int        // buffers made
	mu      sync.Mutex // guards the CIDs of parts being added
}

// addsInFlight is how many chunks of an upload are added at once.
const addsInFlight = 4

const (
	partsFile = "parts"
	chunkFile = "chunk"
)

// openSpooled reads the upload spooled in dir, creating dir with mkdir if need be; fresh
// reports that there was nothing.
func openSpooled(dir string, mkdir func(string) error) (s *spooled, fresh bool, err error) {
	s = &spooled{dir: dir, adds: new(errgroup.Group), free: make(chan []byte, addsInFlight+1)}
	b, err := os.ReadFile(filepath.Join(dir, chunkFile))
	if errors.Is(err, fs.ErrNotExist) {
		if err := mkdir(dir); err != nil {
			return nil, false, fmt.Errorf("spool: %w", err)
		}
		// Parts written by a save that a crash cut short, before it wrote chunk.
		if err := os.Remove(filepath.Join(dir, partsFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, false, fmt.Errorf("spool: %w", err)
		}
		return s, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("spool: %w", err)
	}
	if len(b) < 8 || len(b)-8 > ipfs.Import.ChunkSize {
		return nil, false, fmt.Errorf("spool %s: %s is damaged", dir, chunkFile)
	}
	n := binary.BigEndian.Uint64(b)
	s.chunk = append(s.chunk, b[8:]...)
	if err := s.readParts(n); err != nil {
		return nil, false, fmt.Errorf("spool %s: %w", dir, err)
	}
	return s, false, nil
}

// readParts reads the first n parts of the parts file and cuts off any after them.
func (s *spooled) readParts(n uint64) error {
	name := filepath.Join(s.dir, partsFile)
	b, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	used := 0
	for uint64(len(s.parts)) < n && sc.Scan() {
		c, err := cid.Decode(sc.Text())
		if err != nil {
			return fmt.Errorf("%s: %w", partsFile, err)
		}
		s.parts = append(s.parts, ipfs.Part{CID: c, Size: int64(ipfs.Import.ChunkSize)})
		used += len(sc.Bytes()) + 1
	}
	if uint64(len(s.parts)) < n {
		return fmt.Errorf("%s: %d parts, want %d", partsFile, len(s.parts), n)
	}
	s.saved, s.held = len(s.parts), len(s.parts)
	if used < len(b) {
		return os.Truncate(name, int64(used))
	}
	return nil
}

// spooledSize returns the size of the upload spooled in dir, or -1 if none is.
func spooledSize(dir string) int64 {
	f, err := os.Open(filepath.Join(dir, chunkFile))
	if err != nil {
		return -1
	}
	defer f.Close()
	var n [8]byte
	fi, err := f.Stat()
	if err != nil || fi.Size() < 8 {
		return -1
	}
	if _, err := io.ReadFull(f, n[:]); err != nil {
		return -1
	}
	return int64(binary.BigEndian.Uint64(n[:]))*int64(ipfs.Import.ChunkSize) + fi.Size() - 8
}

// size is the number of bytes of the upload so far.
func (s *spooled) size() int64 {
	return int64(len(s.parts))*int64(ipfs.Import.ChunkSize) + int64(len(s.chunk))
}

// addChunk starts adding the chunk in progress as the next part. wait waits for it.
func (s *spooled) addChunk(ctx context.Context, node ipfs.Node) {
	s.mu.Lock()
	i := len(s.parts)
	s.parts = append(s.parts, ipfs.Part{Size: int64(len(s.chunk))})
	s.mu.Unlock()
	b := s.chunk
	s.adds.Go(func() error {
		defer func() {
			select {
			case s.free <- b[:0]:
			default: // the first chunk's buffer, one too many
			}
		}()
		c, err := node.Add(ctx, files.NewBytesFile(b))
		s.mu.Lock()
		s.parts[i].CID = c
		s.mu.Unlock()
		return err
	})
	s.chunk = s.buffer()
}

// buffer returns an empty buffer of the chunk size, waiting for one when there are
// addsInFlight+1 already.
func (s *spooled) buffer() []byte {
	select {
	case b := <-s.free:
		return b
	default:
	}
	if s.buffers <= addsInFlight {
		s.buffers++
		return make([]byte, 0, ipfs.Import.ChunkSize)
	}
	return <-s.free
}

// room returns the free end of the chunk in progress, growing its buffer, up to the chunk
// size, when it is full.
func (s *spooled) room() []byte {
	if len(s.chunk) == cap(s.chunk) {
		grown := make([]byte, len(s.chunk), min(max(2*cap(s.chunk), 64<<10), ipfs.Import.ChunkSize))
		copy(grown, s.chunk)
		s.chunk = grown
	}
	return s.chunk[len(s.chunk):cap(s.chunk)]
}

// holdNew waits for the chunks being added, then has the node hold those it does not
// hold yet (see ipfs.Holder).
func (s *spooled) holdNew(ctx context.Context, node ipfs.Node) error {
	if err := s.wait(); err != nil {
		return err
	}
	if err := ipfs.HoldParts(ctx, node, s.hold, s.parts[s.held:]); err != nil {
		return fmt.Errorf("hold the upload's chunks: %w", err)
	}
	s.held = len(s.parts)
	return nil
}

// wait waits for the chunks being added, and returns the first error of any add since
// the spool was opened (an errgroup.Group keeps it).
func (s *spooled) wait() error { return s.adds.Wait() }

// save has the node hold the parts added since the last save, then writes them, then the
// chunk in progress. It lets go of the buffers not in use: the upload may wait a while
// for its next part.
func (s *spooled) save(ctx context.Context, node ipfs.Node) error {
	if err := s.holdNew(ctx, node); err != nil {
		return err
	}
	for len(s.free) > 0 {
		<-s.free
		s.buffers--
	}
	if s.saved < len(s.parts) {
		var b bytes.Buffer
		for _, p := range s.parts[s.saved:] {
			b.WriteString(p.CID.String())
			b.WriteByte('\n')
		}
		f, err := os.OpenFile(filepath.Join(s.dir, partsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		_, err = f.Write(b.Bytes())
		if err == nil {
			err = f.Sync()
		}
		if err = errors.Join(err, f.Close()); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.saved = len(s.parts)
	}
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(s.chunk)), uint64(len(s.parts)))
	b = append(b, s.chunk...)
	if err := writeDurably(filepath.Join(s.dir, chunkFile), b); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// newSuffix names the file writeDurably writes before it renames it.
const newSuffix = ".new"

// writeDurably replaces the file name with b, whole, and returns once the new file and
// its name are on disk: an upload's state is acknowledged with the request that saved it.
func writeDurably(name string, b []byte) error {
	tmp := name + newSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err := errors.Join(err, f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(name))
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// SpooledParts returns the CIDs of the chunks that the uploads in progress spooled in the
// uploads directory dir have added: a garbage collection of the node must keep them.
func SpooledParts(dir string) ([]cid.Cid, error) {
	var out []cid.Cid
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() != partsFile {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, line := range strings.Fields(string(b)) {
			// A line a crash cut short names no part the upload counts.
			if c, err := cid.Decode(line); err == nil {
				out = append(out, c)
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return out, err
}
