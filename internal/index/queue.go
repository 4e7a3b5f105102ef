package index

import (
	"context"
	"sync"
)

// queue holds the names of repositories to read again, each once, in the order they
// came. One worker takes them, so that two reads of one repository never race. A name is
// to be read from the live registry if anything but the start-up build asked for it.
type queue struct {
	mu      sync.Mutex
	pending map[string]bool // by name: whether to read it live
	order   []string
	busy    bool
	wake    chan struct{}
	idle    chan struct{} // closed while nothing is pending or busy
}

func newQueue() queue {
	idle := make(chan struct{})
	close(idle)
	return queue{pending: map[string]bool{}, wake: make(chan struct{}, 1), idle: idle}
}

// add asks for the repository name to be read from the live registry.
func (q *queue) add(name string) { q.put(name, true) }

// addBuilt asks for the repository name to be read by the start-up build.
func (q *queue) addBuilt(name string) { q.put(name, false) }

func (q *queue) put(name string, live bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if was, ok := q.pending[name]; ok {
		q.pending[name] = was || live
		return
	}
	if len(q.order) == 0 && !q.busy {
		q.idle = make(chan struct{})
	}
	q.pending[name] = live
	q.order = append(q.order, name)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// next waits for a name to read, and whether to read it live, and marks the queue busy
// until done.
func (q *queue) next(ctx context.Context) (name string, live bool, err error) {
	for {
		q.mu.Lock()
		if len(q.order) > 0 {
			name := q.order[0]
			q.order[0] = ""
			q.order = q.order[1:]
			live := q.pending[name]
			delete(q.pending, name)
			q.busy = true
			q.mu.Unlock()
			return name, live, nil
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			return "", false, ctx.Err()
		}
	}
}

// done marks the name next returned read, and reports whether nothing is pending.
func (q *queue) done() (empty bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.busy = false
	if len(q.order) == 0 {
		close(q.idle)
		return true
	}
	return false
}

// wait waits until nothing is pending or busy.
func (q *queue) wait(ctx context.Context) error {
	q.mu.Lock()
	idle := q.idle
	q.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
