package mirror

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"
)

// flights make one piece of work on a digest at a time: a fetch, the publishing of a
// manifest, or its expiry. The first caller does it, on its own goroutine, and later
// callers wait for it to end, or give up their turn.
type flights struct {
	mu sync.Mutex
	m  map[digest.Digest]*flight
}

type flight struct {
	done chan struct{}
	err  error
}

// start returns the work on d in progress and false, or a new one and true: the caller
// then does the work and must end it.
func (fs *flights) start(d digest.Digest) (*flight, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.m[d]; f != nil {
		return f, false
	}
	if fs.m == nil {
		fs.m = map[digest.Digest]*flight{}
	}
	f := &flight{done: make(chan struct{})}
	fs.m[d] = f
	return f, true
}

// turn waits for the work on d in progress, if any, to end and starts a new one, which
// the caller must end.
func (fs *flights) turn(ctx context.Context, d digest.Digest) (*flight, error) {
	for {
		f, first := fs.start(d)
		if first {
			return f, nil
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// end ends the work f on d with its error.
func (fs *flights) end(d digest.Digest, f *flight, err error) {
	fs.mu.Lock()
	delete(fs.m, d)
	fs.mu.Unlock()
	f.err = err
	close(f.done)
}

// wait waits for f to end, or ctx to.
func (f *flight) wait(ctx context.Context) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
