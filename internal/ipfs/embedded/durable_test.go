package embedded

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
)

// TestSyncerGroups checks that callers who ask while a sync runs share the next one, and
// that none of them is answered by the sync that was already running.
func TestSyncerGroups(t *testing.T) {
	release := make(chan struct{})
	var rounds atomic.Int32
	s, err := newSyncer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.sync = func(f *os.File) error {
		if rounds.Add(1) == 1 {
			<-release // the first round runs until the others have asked
		}
		return syncFS(f)
	}
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- s.Sync(ctx) }()
	for rounds.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	var answered atomic.Int32
	for range 10 {
		wg.Go(func() {
			if err := s.Sync(ctx); err != nil {
				t.Error(err)
			}
			answered.Add(1)
		})
	}
	time.Sleep(50 * time.Millisecond)
	if n := answered.Load(); n != 0 {
		t.Fatalf("%d callers answered by a sync that started before they asked", n)
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := rounds.Load(); n != 2 {
		t.Errorf("%d syncs for 11 callers, 10 of them asking together: want 2", n)
	}
}

// TestSyncerContext checks that a caller whose context ends is answered at once.
func TestSyncerContext(t *testing.T) {
	s, err := newSyncer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	block := make(chan struct{})
	defer close(block)
	s.sync = func(*os.File) error { <-block; return nil }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.Sync(ctx); err != context.DeadlineExceeded {
		t.Errorf("Sync under a stuck disk: %v, want the context's error", err)
	}
}

// TestFlushSyncs checks that Flush, which acknowledges changes, and a checkpoint each
// sync the repository's file system after writing, and that a failed sync fails them.
func TestFlushSyncs(t *testing.T) {
	n := open(t, Options{Path: t.TempDir(), Swarm: loopback})
	ctx := context.Background()
	var syncs atomic.Int32
	fail := errors.New("disk gone")
	var failing atomic.Bool
	n.disk.mu.Lock()
	n.disk.sync = func(f *os.File) error {
		syncs.Add(1)
		if failing.Load() {
			return fail
		}
		return syncFS(f)
	}
	n.disk.mu.Unlock()
	c, err := n.Add(ctx, files.NewBytesFile([]byte("acknowledged")))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Link(ctx, "/a", c); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if syncs.Load() == 0 {
		t.Fatal("Flush returned without syncing the disk")
	}
	before := syncs.Load()
	if err := n.checkpointNow(ctx); err != nil {
		t.Fatal(err)
	}
	if syncs.Load() == before {
		t.Error("a checkpoint emptied the journal without syncing the root it recorded")
	}
	failing.Store(true)
	if err := n.Link(ctx, "/b", c); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); !errors.Is(err, fail) {
		t.Errorf("Flush with a failing sync = %v, want its error", err)
	}
	failing.Store(false)
}
