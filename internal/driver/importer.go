package driver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
)

// An importer imports an upload into IPFS while it arrives, so that committing it does
// not mean reading and hashing it all over again, and spools it as it goes, so that the
// upload survives a restart. The request that brings the data only hands it over; the
// importer's goroutine does the rest on another core.
//
// Distribution closes the writer after every PATCH and opens a new one for the next, so
// importers outlive writers: the driver keeps them by path, and a writer that appends
// where one stopped picks it up. When that chain breaks (a restart, a writer at another
// offset), the writer spools the data itself and Commit imports the spool; the CID is
// the same either way.
type importer struct {
	p      *pipe
	cancel context.CancelFunc
	done   chan struct{}
	cid    cid.Cid
	err    error

	size     int64 // bytes handed over so far
	attached bool  // a writer is handing it data
	idle     *time.Timer
}

// importIdle is how long an importer waits for the next part of its upload.
const importIdle = 10 * time.Minute

var errAbandoned = errors.New("upload abandoned")

// startImport starts importing what is handed to it, appending it to the spool file.
func startImport(node ipfs.Node, spool *os.File) *importer {
	ctx, cancel := context.WithCancel(context.Background())
	buf := bufio.NewWriterSize(spool, spoolBuffer)
	p := newPipe(pipeSlots, buf.Flush)
	im := &importer{p: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(im.done)
		im.cid, im.err = node.Add(ctx, files.NewReaderFile(io.TeeReader(p, buf)))
		im.err = errors.Join(im.err, buf.Flush(), spool.Close())
		p.stopReading(errors.Join(im.err, errAbandoned)) // unblock a writer if Add stopped early
	}()
	return im
}

// spoolBuffer is how much an importer gathers before it writes to its spool.
const spoolBuffer = 1 << 20

func (im *importer) abort() {
	im.p.CloseWithError(errAbandoned)
	im.cancel()
}

// importers holds the importers of uploads in progress, by path.
type importers struct {
	node ipfs.Node
	mu   sync.Mutex
	m    map[string]*importer
}

// attach returns the importer for a writer of p whose spool, the file name, holds offset
// bytes, starting one if there is none. It returns nil when the upload cannot be imported
// as it arrives.
func (is *importers) attach(p, name string, offset int64) (*importer, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	im := is.m[p]
	if im != nil && (im.attached || im.size != offset) {
		im.abort()
		delete(is.m, p)
		return nil, nil
	}
	if im == nil {
		if offset != 0 {
			return nil, nil // what came before was not imported
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, fmt.Errorf("spool %s: %w", p, err)
		}
		im = startImport(is.node, f)
		is.m[p] = im
	}
	if im.idle != nil {
		im.idle.Stop()
	}
	im.attached = true
	return im, nil
}

// detach leaves im waiting for the next writer of p, for a while.
func (is *importers) detach(p string, im *importer) {
	is.mu.Lock()
	defer is.mu.Unlock()
	im.attached = false
	im.idle = time.AfterFunc(importIdle, func() { is.drop(p, im) })
}

// finish ends the import of p and returns its CID.
func (is *importers) finish(p string, im *importer) (cid.Cid, error) {
	is.mu.Lock()
	delete(is.m, p)
	is.mu.Unlock()
	im.p.Close()
	<-im.done
	return im.cid, im.err
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

// pipeSlots is how many writes a pipe holds before a write waits for the importer: with
// Distribution's 32 KiB copies, a few MiB, so that receiving an upload and importing it
// go on side by side.
const pipeSlots = 128

// pipe is an in-memory pipe that holds up to a number of writes, unlike io.Pipe, whose
// writes wait for a read. Either end may stop it while the other is in a call.
type pipe struct {
	ch       chan item
	cur      []byte
	sync     func() error // run by the reader at a mark
	once     sync.Once
	closed   chan struct{} // closed when the writer ends the data
	writeErr error         // why: io.EOF for a normal end
	stopped  chan struct{} // closed when the reader stops
	readErr  error         // why
}

// item is data, or a mark that the reader closes once it has read, and synced, all the
// data before it.
type item struct {
	data []byte
	mark chan struct{}
}

func newPipe(slots int, sync func() error) *pipe {
	return &pipe{ch: make(chan item, slots), sync: sync, closed: make(chan struct{}), stopped: make(chan struct{})}
}

func (p *pipe) send(it item) error {
	select {
	case p.ch <- it:
		return nil
	case <-p.stopped:
		return p.readErr
	case <-p.closed:
		return io.ErrClosedPipe
	}
}

// Write copies b into the pipe.
func (p *pipe) Write(b []byte) (int, error) {
	if err := p.send(item{data: append([]byte(nil), b...)}); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Sync waits until the reader has read what was written before and run its sync
// function: an importer has then spooled it.
func (p *pipe) Sync() error {
	mark := make(chan struct{})
	if err := p.send(item{mark: mark}); err != nil {
		return err
	}
	select {
	case <-mark:
		return nil
	case <-p.stopped:
		return p.readErr
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
		var it item
		select {
		case it = <-p.ch:
		case <-p.closed:
			select {
			case it = <-p.ch: // written before the end
			default:
				return 0, p.writeErr
			}
		}
		if it.mark != nil {
			if err := p.sync(); err != nil {
				return 0, err
			}
			close(it.mark)
		}
		p.cur = it.data
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
