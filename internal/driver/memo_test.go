package driver

import (
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/discoregistry/disco/internal/ipfs"
)

// lookupNode counts the node's Stat and Read calls.
type lookupNode struct {
	ipfs.Node
	lookups atomic.Int64
}

func (n *lookupNode) Stat(ctx context.Context, p string) (ipfs.Entry, error) {
	n.lookups.Add(1)
	return n.Node.Stat(ctx, p)
}

func (n *lookupNode) Read(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	n.lookups.Add(1)
	return n.Node.Read(ctx, p, offset)
}

// TestMemo reads the same files twice under a memo: the node is asked once; a change
// under the memo, or a context without one, asks it again.
func TestMemo(t *testing.T) {
	n := &lookupNode{Node: embeddedNode}
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
