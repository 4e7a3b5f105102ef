package global

import (
	"context"
	"sync"
	"time"
)

// flights runs work that callers asking for the same key at once share: the first caller
// starts it, later ones wait for its result. The work runs on a context of its own, bounded
// by a timeout, and is cancelled as soon as no caller waits for it any more: no client,
// no work.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done    chan struct{}
	err     error
	waiters int
	cancel  context.CancelFunc
}

// do runs work for key, or waits for the run in progress, and returns its error; or the
// error of ctx, if ctx ends first. The work's context carries ctx's values.
func (fs *flights) do(ctx context.Context, key string, timeout time.Duration, work func(context.Context) error) error {
	fs.mu.Lock()
	if fs.m == nil {
		fs.m = map[string]*flight{}
	}
	f := fs.m[key]
	if f == nil {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		f = &flight{done: make(chan struct{}), cancel: cancel}
		fs.m[key] = f
		go func() {
			defer cancel()
			err := work(wctx)
			fs.mu.Lock()
			f.err = err
			fs.forget(key, f)
			fs.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	fs.mu.Unlock()

	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f.waiters--; f.waiters == 0 {
		f.cancel()
		fs.forget(key, f) // the next caller starts afresh
	}
	return ctx.Err()
}

// forget removes f from the flights if it is key's. The caller holds fs.mu.
func (fs *flights) forget(key string, f *flight) {
	if fs.m[key] == f {
		delete(fs.m, key)
	}
}
