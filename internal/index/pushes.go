package index

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// pushesFile, in Options.StateDir, holds the last push time of each repository: MFS
// records no times, so nothing else knows them. It is a log of "<RFC 3339 time> <name>"
// lines, appended to at every push and rewritten with one line a repository when it holds
// more than twice as many lines as repositories. A time lost in a crash only shows as
// unknown; so the file is not synced.
const pushesFile = "push-times"

type pushLog struct {
	mu    sync.Mutex
	path  string
	f     *os.File // nil: times are kept in memory only
	times map[string]time.Time
	lines int
}

// open reads the push times kept in dir and opens the file to append to. Times
// recorded before are kept, and written to the file.
func (p *pushLog) open(dir string) error {
	if dir == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.path = filepath.Join(dir, pushesFile)
	b, err := os.ReadFile(p.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("push times: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		ts, name, ok := strings.Cut(sc.Text(), " ")
		t, err := time.Parse(time.RFC3339Nano, ts)
		if !ok || err != nil || name == "" {
			continue // a line cut short by a crash
		}
		if t.After(p.times[name]) {
			p.times[name] = t
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("push times: %w", err)
	}
	return p.compact()
}

// compact rewrites the file with one line a repository and reopens it to append to.
func (p *pushLog) compact() error {
	var buf bytes.Buffer
	for name, t := range p.times {
		fmt.Fprintf(&buf, "%s %s\n", t.UTC().Format(time.RFC3339Nano), name)
	}
	tmp := p.path + ".new"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("push times: %w", err)
	}
	if err := os.Rename(tmp, p.path); err != nil {
		return fmt.Errorf("push times: %w", err)
	}
	if p.f != nil {
		p.f.Close()
	}
	f, err := os.OpenFile(p.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("push times: %w", err)
	}
	p.f, p.lines = f, len(p.times)
	return nil
}

// record notes that name was pushed at t.
func (p *pushLog) record(name string, t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !t.After(p.times[name]) {
		return nil
	}
	p.times[name] = t
	if p.f == nil {
		return nil
	}
	if _, err := fmt.Fprintf(p.f, "%s %s\n", t.UTC().Format(time.RFC3339Nano), name); err != nil {
		return fmt.Errorf("push times: %w", err)
	}
	if p.lines++; p.lines > 2*len(p.times)+1024 {
		return p.compact()
	}
	return nil
}

// forget drops the time of a repository that is gone; the file loses it at the next
// compaction.
func (p *pushLog) forget(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.times, name)
}

// keep forgets the times of the repositories keep says are gone.
func (p *pushLog) keep(keep func(name string) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name := range p.times {
		if !keep(name) {
			delete(p.times, name)
		}
	}
}

func (p *pushLog) get(name string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.times[name]
}

// fill sets the push times of repos.
func (p *pushLog) fill(repos []Repository) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range repos {
		repos[i].Pushed = p.times[repos[i].Name]
	}
}

func (p *pushLog) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		return nil
	}
	err := p.f.Close()
	p.f = nil
	return err
}
