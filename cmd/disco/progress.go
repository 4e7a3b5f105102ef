package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
)

// progress shows what a long operation is doing on one line of a terminal, rewritten as
// it goes and cleared at the end. When w is not a terminal it shows nothing, so scripts
// and logs see only the result.
type progress struct {
	w  io.Writer // nil when not a terminal
	mu sync.Mutex
	// what is shown, and since when
	what  string
	since time.Time
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// newProgress returns a progress line on w, which is shown only when w is a terminal.
func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) {
		return &progress{}
	}
	return newProgressOn(w)
}

// newProgressOn returns a progress line that is always shown on w.
func newProgressOn(w io.Writer) *progress {
	p := &progress{w: w, stop: make(chan struct{}), done: make(chan struct{})}
	go p.tick()
	return p
}

// Show replaces what the line shows; the time since is added every second.
func (p *progress) Show(format string, args ...any) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.what, p.since = fmt.Sprintf(format, args...), time.Now()
	p.draw()
}

func (p *progress) tick() {
	defer close(p.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.draw()
			p.mu.Unlock()
		}
	}
}

// draw writes the line; p.mu is held.
func (p *progress) draw() {
	if p.what == "" {
		return
	}
	fmt.Fprintf(p.w, "\r\033[K%s (%s)", p.what, time.Since(p.since).Round(time.Second))
}

// Done clears the line and stops it. It may be called more than once.
func (p *progress) Done() {
	if p.w == nil {
		return
	}
	p.once.Do(func() { close(p.stop) })
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.what != "" {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.what = ""
}
