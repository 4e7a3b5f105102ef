package driver

import (
	"bytes"
	"context"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// A read memo remembers what one request read: Distribution reads a blob's link file
// twice and stats the blob three times to serve one GET, and over a Kubo daemon each is
// a call. What a request sees stays as it first saw it; a change it makes itself (a
// clone filed while serving a pull) forgets everything.
type memo struct {
	mu       sync.Mutex
	stats    map[memoKey]storagedriver.FileInfo
	contents map[memoKey][]byte
}

type memoKey struct {
	d *driver
	p string
}

type memoCtxKey struct{}

// maxMemoContent bounds the files a memo keeps: link files and manifests, not blobs.
const maxMemoContent = 64 << 10

// WithMemo returns a context whose driver reads are remembered for as long as it lasts:
// for a request that only reads.
func WithMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, memoCtxKey{}, &memo{
		stats:    map[memoKey]storagedriver.FileInfo{},
		contents: map[memoKey][]byte{},
	})
}

func memoOf(ctx context.Context) *memo {
	m, _ := ctx.Value(memoCtxKey{}).(*memo)
	return m
}

func (m *memo) stat(k memoKey) (storagedriver.FileInfo, bool) {
	if m == nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	fi, ok := m.stats[k]
	return fi, ok
}

func (m *memo) keepStat(k memoKey, fi storagedriver.FileInfo) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats[k] = fi
}

// content returns a copy of what the memo keeps of k: callers own what they get.
func (m *memo) content(k memoKey) ([]byte, bool) {
	if m == nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.contents[k]
	return bytes.Clone(b), ok
}

func (m *memo) keepContent(k memoKey, b []byte) {
	if m == nil || len(b) > maxMemoContent {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.contents[k] = bytes.Clone(b)
}

// forget forgets everything: the request changed something.
func (m *memo) forget() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.stats)
	clear(m.contents)
}
