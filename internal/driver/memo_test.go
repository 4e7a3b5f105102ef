package driver

import (
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
)

// callCounter counts the node's calls that read MFS (lookups) and that change it.
type callCounter struct {
	ipfs.Node
	lookups, changes atomic.Int64
}

func (n *callCounter) Stat(ctx context.Context, p string) (ipfs.Entry, error) {
	n.lookups.Add(1)
	return n.Node.Stat(ctx, p)
}

func (n *callCounter) Read(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	n.lookups.Add(1)
	return n.Node.Read(ctx, p, offset)
}

func (n *callCounter) List(ctx context.Context, p string) ([]ipfs.Entry, error) {
	n.lookups.Add(1)
	return n.Node.List(ctx, p)
}

func (n *callCounter) Add(ctx context.Context, f files.Node) (cid.Cid, error) {
	n.changes.Add(1)
	return n.Node.Add(ctx, f)
}

func (n *callCounter) Link(ctx context.Context, p string, c cid.Cid) error {
	n.changes.Add(1)
	return n.Node.Link(ctx, p, c)
}

// TestMemo reads the same files twice under a memo: the node is asked once; a change
// under the memo, or a context without one, asks it again.
func TestMemo(t *testing.T) {
	n := &callCounter{Node: embeddedNode}
	d := newDriver(t, n)
	plain := context.Background()
	if err := d.PutContent(plain, "/a/link", []byte("sha256:aa")); err != nil {
		t.Fatal(err)
	}
	lookups := func(f func(ctx context.Context)) int64 {
		before := n.lookups.Load()
		f(WithMemo(plain))
		return n.lookups.Load() - before
	}
	read := func(ctx context.Context, want string) {
		t.Helper()
		b, err := d.GetContent(ctx, "/a/link")
		if err != nil || string(b) != want {
			t.Fatalf("GetContent = %q, %v; want %q", b, err, want)
		}
		if _, err := d.Stat(ctx, "/a/link"); err != nil {
			t.Fatal(err)
		}
	}
	if got := lookups(func(ctx context.Context) { read(ctx, "sha256:aa"); read(ctx, "sha256:aa") }); got != 2 {
		t.Errorf("two reads and stats under a memo asked the node %d times, want 2", got)
	}
	if got := lookups(func(ctx context.Context) {
		read(ctx, "sha256:aa")
		if err := d.PutContent(ctx, "/a/link", []byte("sha256:bb")); err != nil {
			t.Fatal(err)
		}
		read(ctx, "sha256:bb")
	}); got != 4 {
		t.Errorf("reads around a change under a memo asked the node %d times, want 4", got)
	}
	before := n.lookups.Load()
	read(plain, "sha256:bb")
	read(plain, "sha256:bb")
	if got := n.lookups.Load() - before; got != 4 {
		t.Errorf("two reads and stats without a memo asked the node %d times, want 4", got)
	}

	// What a caller does with the bytes it got changes nothing in the memo.
	ctx := WithMemo(plain)
	b, _ := d.GetContent(ctx, "/a/link")
	b[0] = 'X'
	if again, _ := d.GetContent(ctx, "/a/link"); string(again) != "sha256:bb" {
		t.Errorf("GetContent after the caller changed what it got = %q", again)
	}
	// A file not found is not remembered: a clone may file it within the request.
	if _, err := d.GetContent(ctx, "/a/later"); err == nil {
		t.Fatal("GetContent of a missing file succeeded")
	}
	if err := d.PutContent(plain, "/a/later", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if b, err := d.GetContent(ctx, "/a/later"); err != nil || string(b) != "x" {
		t.Errorf("GetContent of a file filed after it was not found = %q, %v", b, err)
	}
}
