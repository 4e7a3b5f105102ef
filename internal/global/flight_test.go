package global

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFlightsShareWork(t *testing.T) {
	var fs flights
	var runs atomic.Int32
	release := make(chan struct{})
	work := func(ctx context.Context) error {
		runs.Add(1)
		<-release
		return errors.New("done")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- fs.do(context.Background(), "k", time.Minute, work) })
	}
	for fs.waiting("k") < 4 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil || err.Error() != "done" {
			t.Errorf("a waiter got %v, want the work's error", err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("work ran %d times, want once", n)
	}
}

func TestFlightsStopWhenNobodyWaits(t *testing.T) {
	var fs flights
	stopped := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		fs.do(ctx, "k", time.Hour, func(ctx context.Context) error {
			<-ctx.Done()
			stopped <- ctx.Err()
			return ctx.Err()
		})
	}()
	for fs.waiting("k") < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("work stopped with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("work goes on with nobody waiting")
	}
	// A new caller starts the work again rather than joining the stopped one.
	if err := fs.do(context.Background(), "k", time.Minute, func(context.Context) error { return nil }); err != nil {
		t.Errorf("after a stop: %v", err)
	}
}

// waiting returns how many callers wait for key's work.
func (fs *flights) waiting(key string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.m[key]; f != nil {
		return f.waiters
	}
	return 0
}
