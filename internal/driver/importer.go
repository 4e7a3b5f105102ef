package driver

import (
	"context"
	"errors"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
)

// An importer imports an upload into IPFS while it arrives, so that committing it does
// not mean reading and hashing it all over again. Distribution closes the writer after
// every PATCH and opens a new one for the next, so importers outlive writers: the driver
// keeps them by path, and a writer that appends where one stopped picks it up. Whenever
// that chain breaks (a restart, a writer at another offset), Commit imports the spooled
// upload instead; the CID is the same either way.
type importer struct {
	pw     *pipe
	cancel context.CancelFunc
	done   chan struct{}
	cid    cid.Cid
	err    error

	size     int64 // bytes fed so far
	attached bool  // a writer is feeding it
	idle     *time.Timer
}

// importIdle is how long an importer waits for the next part of its upload.
const importIdle = 10 * time.Minute

var errAbandoned = errors.New("upload abandoned")

func startImport(node ipfs.Node) *importer {
	ctx, cancel := context.WithCancel(context.Background())
	p := newPipe(pipeSlots)
	im := &importer{pw: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(im.done)
		im.cid, im.err = node.Add(ctx, files.NewReaderFile(p))
		p.stopReading(errors.Join(im.err, errAbandoned)) // unblock a writer if Add stopped early
	}()
	return im
}

// pipeSlots is how many writes a pipe holds before a write waits for the importer: with
// Distribution's 32 KiB copies, a few MiB, so that receiving an upload and importing it
// go on side by side.
const pipeSlots = 128

// pipe is an in-memory pipe that holds up to a number of writes, unlike io.Pipe, whose
// writes wait for a read. Either end may stop it while the other is in a call.
type pipe struct {
	ch       chan []byte
	cur      []byte
	once     sync.Once
	closed   chan struct{} // closed when the writer ends the data
	writeErr error         // why: io.EOF for a normal end
	stopped  chan struct{} // closed when the reader stops
	readErr  error         // why
}

func newPipe(slots int) *pipe {
	return &pipe{ch: make(chan []byte, slots), closed: make(chan struct{}), stopped: make(chan struct{})}
}

// Write copies b into the pipe.
func (p *pipe) Write(b []byte) (int, error) {
	c := make([]byte, len(b))
	copy(c, b)
	select {
	case p.ch <- c:
		return len(b), nil
	case <-p.stopped:
		return 0, p.readErr
	case <-p.closed:
		return 0, io.ErrClosedPipe
	}
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
		select {
		case p.cur = <-p.ch:
		case <-p.closed:
			select {
			case p.cur = <-p.ch: // written before the end
			default:
				return 0, p.writeErr
			}
		}
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// stopReading makes writes fail with err from now on.
func (p *pipe) stopReading(err error) {
	p.readErr = err
	close(p.stopped)
}

func (im *importer) abort() {
	im.pw.CloseWithError(errAbandoned)
	im.cancel()
}

// importers holds the importers of uploads in progress, by path.
type importers struct {
	node ipfs.Node
	mu   sync.Mutex
	m    map[string]*importer
}

// attach returns the importer for a writer of p that starts at offset, starting one for a
// new upload. It returns nil when the upload cannot be imported as it arrives.
func (is *importers) attach(p string, offset int64) *importer {
	is.mu.Lock()
	defer is.mu.Unlock()
	im := is.m[p]
	if im != nil && (im.attached || im.size != offset) {
		im.abort()
		delete(is.m, p)
		return nil
	}
	if im == nil {
		if offset != 0 {
			return nil
		}
		im = startImport(is.node)
		is.m[p] = im
	}
	if im.idle != nil {
		im.idle.Stop()
	}
	im.attached = true
	return im
}

// detach leaves im waiting for the next writer of p, for a while.
func (is *importers) detach(p string, im *importer) {
	is.mu.Lock()
	defer is.mu.Unlock()
	im.attached = false
	im.idle = time.AfterFunc(importIdle, func() { is.drop(p, im) })
}

// finish ends the import of p's size bytes and returns its CID, or cid.Undef if the
// importer did not get exactly those bytes.
func (is *importers) finish(p string, im *importer, size int64) cid.Cid {
	is.mu.Lock()
	delete(is.m, p)
	is.mu.Unlock()
	if im.size != size {
		im.abort()
		return cid.Undef
	}
	im.pw.Close()
	<-im.done
	if im.err != nil {
		return cid.Undef
	}
	return im.cid
}

// drop stops im, if it is still p's importer.
func (is *importers) drop(p string, im *importer) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.m[p] == im {
		delete(is.m, p)
	}
	im.abort()
}

// dropUnder stops the importers of p and of the paths below it.
func (is *importers) dropUnder(p string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	for q, im := range is.m {
		if q == p || strings.HasPrefix(q, path.Clean(p)+"/") {
			im.abort()
			delete(is.m, q)
		}
	}
}
