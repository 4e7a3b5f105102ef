package mirror

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"
)

// flights make one fetch of a digest at a time: the first caller does it, on its own
// goroutine, and later callers wait for it to end.
type flights struct {
	mu sync.Mutex
	m  map[digest.Digest]*flight
}

type flight struct {
	done chan struct{}
	err  error
}

// start returns the fetch of d in progress and false, or a new one and true: the caller
// then does the fetch and must end it.
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

// end ends the fetch f of d with its error.
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
