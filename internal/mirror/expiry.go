package mirror

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/gc"
	"github.com/discoregistry/disco/internal/global"
)

// DefaultTTL is how long a mirrored image is kept when proxy.ttl is not set: a week, as
// in Distribution's pull-through cache.
const DefaultTTL = 7 * 24 * time.Hour

// expiryFile, in Options.StateDir, holds when each mirrored manifest was last fetched: a
// log of "<RFC 3339 time> <digest>" lines, appended to at every fetch and rewritten when
// manifests expire. A line lost in a crash leaves that manifest to be removed by hand.
const expiryFile = "mirror-fetched"

// expireAtOnce bounds the manifests one walk of the registry removes.
const expireAtOnce = 256

// expiry takes mirrored manifests out of the registry ttl after they were fetched, as
// Distribution's pull-through cache does: the manifest, its tags and the digest and CID
// repositories that file it go, and the next pull fetches it again. Blobs stay until disco
// gc frees those that nothing names any more: they are content-addressed, and no other
// image's pull may lose them. A manifest fetched again gets a new ttl.
type expiry struct {
	ttl  time.Duration
	path string // empty: the times are kept in memory only
	log  *slog.Logger

	mu      sync.Mutex
	fetched map[digest.Digest]time.Time
	f       *os.File
}

// openExpiry reads the fetch times kept in dir and opens the file to append to.
func openExpiry(dir string, ttl time.Duration, log *slog.Logger) (*expiry, error) {
	e := &expiry{ttl: ttl, fetched: map[digest.Digest]time.Time{}, log: log}
	if dir == "" {
		return e, nil
	}
	e.path = filepath.Join(dir, expiryFile)
	b, err := os.ReadFile(e.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("mirror fetch times: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		ts, ds, _ := strings.Cut(sc.Text(), " ")
		t, terr := time.Parse(time.RFC3339Nano, ts)
		d, derr := digest.Parse(ds)
		if terr != nil || derr != nil {
			continue // a line cut short by a crash
		}
		if t.After(e.fetched[d]) {
			e.fetched[d] = t
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mirror fetch times: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.compact(); err != nil {
		return nil, err
	}
	return e, nil
}

// compact rewrites the file with one line a manifest and reopens it to append to; the
// caller holds e.mu.
func (e *expiry) compact() error {
	if e.path == "" {
		return nil
	}
	var buf bytes.Buffer
	for d, t := range e.fetched {
		fmt.Fprintf(&buf, "%s %s\n", t.UTC().Format(time.RFC3339Nano), d)
	}
	tmp := e.path + ".new"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("mirror fetch times: %w", err)
	}
	if err := os.Rename(tmp, e.path); err != nil {
		return fmt.Errorf("mirror fetch times: %w", err)
	}
	if e.f != nil {
		e.f.Close()
	}
	f, err := os.OpenFile(e.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("mirror fetch times: %w", err)
	}
	e.f = f
	return nil
}

// mirrored notes that the manifest d was just fetched. A nil expiry keeps everything.
func (e *expiry) mirrored(d digest.Digest) {
	if e == nil {
		return
	}
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fetched[d] = now
	if e.f == nil {
		return
	}
	if _, err := fmt.Fprintf(e.f, "%s %s\n", now.UTC().Format(time.RFC3339Nano), d); err != nil {
		e.log.Warn("mirror: keep the fetch time", "manifest", d, "err", err)
	}
}

// due returns manifests whose time is up, at most n.
func (e *expiry) due(now time.Time, n int) []digest.Digest {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []digest.Digest
	for d, t := range e.fetched {
		if len(out) == n {
			break
		}
		if !now.Before(t.Add(e.ttl)) {
			out = append(out, d)
		}
	}
	return out
}

// forget forgets the manifests ds, each unless it was fetched again after now, and
// rewrites the file.
func (e *expiry) forget(ds []digest.Digest, now time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range ds {
		if t, ok := e.fetched[d]; ok && !now.Before(t.Add(e.ttl)) {
			delete(e.fetched, d)
		}
	}
	return e.compact()
}

func (e *expiry) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return nil
	}
	err := e.f.Close()
	e.f = nil
	return err
}

// expire removes the mirrored manifests whose time is up, now and then, until ctx ends.
func (m *Mirror) expire(ctx context.Context) {
	tick := time.NewTicker(max(min(m.expiry.ttl/2, time.Minute), time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for {
				ds := m.expiry.due(now, expireAtOnce)
				if len(ds) == 0 {
					break
				}
				n, err := m.remove(ctx, ds, now)
				if err != nil {
					if ctx.Err() == nil {
						m.log.Warn("mirror: could not remove expired images; trying again later", "manifests", len(ds), "err", err)
					}
					break
				}
				if n == 0 || len(ds) < expireAtOnce {
					break // what is left is busy, until the next tick
				}
			}
		}
	}
}

// remove takes the expired manifests ds out of the registry, and returns how many it
// took on. A manifest that other work is on (a fetch, which gives it a new ttl, or its
// publishing) is left for later: its removal would race with it.
func (m *Mirror) remove(ctx context.Context, ds []digest.Digest, now time.Time) (int, error) {
	var held []digest.Digest
	for _, d := range ds {
		f, first := m.fetches.start(d)
		if !first {
			continue
		}
		defer m.fetches.end(d, f, nil)
		held = append(held, d)
	}
	if len(held) == 0 {
		return 0, nil
	}
	removed, err := gc.Remove(ctx, m.store, held...)
	if err != nil && !errors.As(err, new(*gc.NotHeldError)) {
		for _, r := range removed {
			m.changed(r.Repository)
		}
		return 0, err
	}
	// Forget that they were published, and that the indexes whose digest and CID
	// repositories went with them were: publishing them again files them again.
	unpublished := map[string]bool{} // by digest, in hex
	for _, d := range held {
		unpublished[d.Encoded()] = true
	}
	lines := map[digest.Digest][]string{}
	for _, r := range removed {
		m.changed(r.Repository)
		if r.Whole && global.IsDigestName(r.Repository) {
			unpublished[r.Repository] = true
		}
		lines[r.Digest] = append(lines[r.Digest], r.String())
	}
	for d, l := range lines {
		m.log.Info("mirror: expired", "manifest", d, "removed", strings.Join(l, ", "))
	}
	m.mu.Lock()
	for key := range m.published {
		if _, d, ok := strings.Cut(key, "@"); ok && unpublished[digest.Digest(d).Encoded()] {
			delete(m.published, key)
		}
	}
	m.mu.Unlock()
	return len(held), m.expiry.forget(held, now)
}
