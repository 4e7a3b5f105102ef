package embedded

import (
	"context"
	"fmt"
	"os"
	"sync"
)

// A syncer writes out what was written to the file system that holds a directory (the
// node's repository: its blocks, its datastore, the MFS journal), so that a power cut
// loses none of it. Kubo's flatfs is opened without sync, which would fsync every block
// and its directory as it is written; one sync of the file system when a change is
// acknowledged costs far less for the same guarantee.
//
// Calls are grouped: one sync runs at a time, and every caller waits for a sync that
// started after it asked, so that many requests acknowledged together share one sync.
type syncer struct {
	dir *os.File

	mu      sync.Mutex
	sync    func(*os.File) error // syncFS, but in tests
	running bool
	next    *syncRound // the round callers join, started when the running one ends
}

type syncRound struct {
	done chan struct{}
	err  error
}

func newSyncer(dir string) (*syncer, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s to sync: %w", dir, err)
	}
	return &syncer{dir: f, sync: syncFS}, nil
}

// Sync returns once everything written before it was called is on disk.
func (s *syncer) Sync(ctx context.Context) error {
	s.mu.Lock()
	r := s.next
	if r == nil {
		r = &syncRound{done: make(chan struct{})}
		s.next = r
	}
	if !s.running {
		s.running = true
		go s.run()
	}
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run runs rounds until no caller waits for one.
func (s *syncer) run() {
	for {
		s.mu.Lock()
		r := s.next
		s.next = nil
		if r == nil {
			s.running = false
			s.mu.Unlock()
			return
		}
		do := s.sync
		s.mu.Unlock()
		if err := do(s.dir); err != nil {
			r.err = fmt.Errorf("sync %s: %w", s.dir.Name(), err)
		}
		close(r.done)
	}
}

func (s *syncer) Close() error { return s.dir.Close() }
