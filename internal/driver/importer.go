package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
)

// An importer imports an upload into IPFS while it arrives, so that committing it does
// not mean reading and hashing it all over again. It cuts the upload into chunks of
// ipfs.Import.ChunkSize bytes and adds each as it completes; Commit joins them into the
// DAG an import of the whole blob gives. The request that brings the data only hands it
// over; the importer's goroutines do the rest on the other core.
//
// Whenever a writer closes, the importer saves what it has taken in to the upload's
// spool (see spooled): the CIDs of the chunks added and the bytes of the chunk in
// progress, not a copy of the upload. So an upload survives a restart, and a crash after
// its last request was answered.
//
// Distribution closes the writer after every PATCH and opens a new one for the next, so
// importers outlive writers: the driver keeps them by path, and the next writer picks up
// where the last one stopped. One that finds no importer (after a restart, or after an
// importer was idle too long) starts one from the spool.
type importer struct {
	p      *pipe
	cancel context.CancelFunc
	done   chan struct{}
	cid    cid.Cid
	err    error
	held   bool // the node may hold some of the upload: Commit releases it

	size     int64 // bytes taken in so far, counting those handed over and not imported yet
	attached bool  // a writer is handing it data
	idle     *time.Timer
}

// importIdle is how long an importer waits for the next part of its upload before it
// stops, leaving the upload to its spool.
const importIdle = 30 * time.Second

var (
	errAbandoned = errors.New("upload abandoned")
	errInUse     = errors.New("upload in use by another request")
)

// startImport starts importing, after what s holds, what is handed to it.
func startImport(node ipfs.Node, s *spooled) *importer {
	ctx, cancel := context.WithCancel(context.Background())
	p := newPipe(func() error { return s.save(ctx, node) })
	im := &importer{p: p, cancel: cancel, done: make(chan struct{}), size: s.size()}
	go func() {
		defer close(im.done)
		im.cid, im.err = s.importFrom(ctx, node, p)
		im.held = s.held > 0
		p.stopReading(errors.Join(im.err, errAbandoned)) // unblock a writer if it stopped early
	}()
	return im
}

// stop stops im and waits for its goroutine, so that it writes nothing more to the spool.
func (im *importer) stop() {
	im.p.CloseWithError(errAbandoned)
	im.cancel()
	<-im.done
}

// failed reports an importer that stopped before its upload was finished.
func (im *importer) failed() bool {
	select {
	case <-im.done:
		return true
	default:
		return false
	}
}

// importFrom adds the chunks of what it reads from r, after those of s, and returns the
// CID of the whole upload once r ends.
func (s *spooled) importFrom(ctx context.Context, node ipfs.Node, r io.Reader) (cid.Cid, error) {
	for {
		n, err := r.Read(s.room())
		s.chunk = s.chunk[:len(s.chunk)+n]
		if len(s.chunk) == ipfs.Import.ChunkSize {
			s.addChunk(ctx, node)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return cid.Undef, errors.Join(err, s.wait())
		}
	}
	if len(s.chunk) > 0 || len(s.parts) == 0 { // the last chunk, or the empty blob
		s.addChunk(ctx, node)
	}
	if err := s.wait(); err != nil {
		return cid.Undef, err
	}
	c, err := node.Join(ctx, s.parts)
	// Held until Commit links it. A DAG of one block needs no hold: linking it needs
	// that block, so a collection in between fails the commit, never leaves it partial.
	if err == nil && len(s.parts) > 1 {
		if err = ipfs.Hold(ctx, node, s.hold, c); err == nil {
			s.held = len(s.parts) // all of them, joined
		}
	}
	return c, err
}

// importers holds the importers of uploads in progress, by path.
type importers struct {
	node  ipfs.Node
	spool *spool
	mu    sync.Mutex
	m     map[string]*importer
}

// attach returns the importer for a new writer of p, whose spool is dir and whose content
// the node holds under hold, starting one from the spool if there is none. fresh reports
// an upload with nothing spooled.
func (is *importers) attach(p, dir, hold string) (im *importer, fresh bool, err error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if im = is.m[p]; im != nil && (im.failed() || !im.attached && spooledSize(dir) != im.size) {
		// Start again from what the spool has: the importer stopped, or another Disco
		// sharing the uploads directory took the upload further.
		if !im.failed() {
			im.stop()
		}
		delete(is.m, p)
		im = nil
	}
	if im != nil {
		if im.attached {
			return nil, false, fmt.Errorf("%s: %w", p, errInUse)
		}
		if im.idle != nil {
			im.idle.Stop()
		}
		im.attached = true
		return im, false, nil
	}
	s, fresh, err := openSpooled(dir, is.spool.mkdir)
	if err != nil {
		return nil, false, err
	}
	s.hold = hold
	im = startImport(is.node, s)
	im.attached = true
	is.m[p] = im
	return im, fresh, nil
}

// maxIdle bounds the importers waiting for their upload's next writer. Past it, an
// importer stops as soon as its writer closes; its upload goes on from its spool.
const maxIdle = 32

// detach leaves im waiting for the next writer of p, for a while.
func (is *importers) detach(p string, im *importer) {
	is.mu.Lock()
	defer is.mu.Unlock()
	im.attached = false
	idle := 0
	for _, other := range is.m {
		if !other.attached {
			idle++
		}
	}
	if idle > maxIdle {
		delete(is.m, p)
		im.stop()
		return
	}
	im.idle = time.AfterFunc(importIdle, func() { is.drop(p, im) })
}

// finish ends the import of p and returns its CID, and whether the node may hold some
// of it.
func (is *importers) finish(p string, im *importer) (c cid.Cid, held bool, err error) {
	is.mu.Lock()
	delete(is.m, p)
	is.mu.Unlock()
	im.p.Close()
	<-im.done
	return im.cid, im.held, im.err
}

// drop stops im, if it is still p's importer.
func (is *importers) drop(p string, im *importer) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.m[p] == im {
		delete(is.m, p)
	}
	im.stop()
}

// dropUnder stops the importers of p and of the paths below it.
func (is *importers) dropUnder(p string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	for q, im := range is.m {
		if q == p || strings.HasPrefix(q, path.Clean(p)+"/") {
			im.stop()
			delete(is.m, q)
		}
	}
}

// pipe is an in-memory pipe between a writer and its importer. Like io.Pipe, a write
// returns once the reader has read all of it, so nothing is copied on the way; unlike
// io.Pipe, the writer can ask the reader to sync, and either end may stop it while the
// other is in a call.
type pipe struct {
	ch       chan item
	cur      []byte
	curRead  chan struct{} // closed once cur is read
	sync     func() error  // run by the reader at a mark
	once     sync.Once
	closed   chan struct{} // closed when the writer ends the data
	writeErr error         // why: io.EOF for a normal end
	stopped  chan struct{} // closed when the reader stops
	readErr  error         // why
}

// item is data, closing read once it is read, or a mark that the reader closes once it
// has read all the data before it and run its sync function.
type item struct {
	data []byte
	read chan struct{}
	mark chan struct{}
}

func newPipe(sync func() error) *pipe {
	return &pipe{ch: make(chan item), sync: sync, closed: make(chan struct{}), stopped: make(chan struct{})}
}

// send hands it to the reader and waits until the reader closes done.
func (p *pipe) send(it item, done chan struct{}) error {
	select {
	case p.ch <- it:
	case <-p.stopped:
		return p.readErr
	case <-p.closed:
		return io.ErrClosedPipe
	}
	select {
	case <-done:
		return nil
	case <-p.stopped:
		return p.readErr
	}
}

// Write hands b to the reader and returns once it is read.
func (p *pipe) Write(b []byte) (int, error) {
	read := make(chan struct{})
	if err := p.send(item{data: b, read: read}, read); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Sync waits until the reader has read what was written before and run its sync
// function: an importer has then saved it to its spool.
func (p *pipe) Sync() error {
	mark := make(chan struct{})
	return p.send(item{mark: mark}, mark)
}

// Close ends the data: the reader gets io.EOF after what was written.
func (p *pipe) Close() error { return p.CloseWithError(nil) }

// CloseWithError ends the data with err instead of io.EOF; nil means io.EOF.
func (p *pipe) CloseWithError(err error) error {
	p.once.Do(func() {
		if err == nil {
			err = io.EOF
		}
		p.writeErr = err
		close(p.closed)
	})
	return nil
}

func (p *pipe) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		var it item
		select {
		case it = <-p.ch:
		case <-p.closed:
			return 0, p.writeErr
		}
		if it.mark != nil {
			if err := p.sync(); err != nil {
				return 0, err
			}
			close(it.mark)
			continue
		}
		p.cur, p.curRead = it.data, it.read
		p.release()
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	p.release()
	return n, nil
}

// release lets the writer of cur go once cur is read.
func (p *pipe) release() {
	if len(p.cur) == 0 && p.curRead != nil {
		close(p.curRead)
		p.curRead = nil
	}
}

// stopReading makes writes fail with err from now on.
func (p *pipe) stopReading(err error) {
	p.readErr = err
	close(p.stopped)
}
