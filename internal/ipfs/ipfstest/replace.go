package ipfstest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/ipfs/boxo/files"

	"github.com/discoregistry/disco/internal/ipfs"
)

// testReplaceUnderReaders replaces an entry over and over, a file by a file, by a
// directory and back, while others look it up: none of them may see it missing.
func testReplaceUnderReaders(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	tree, err := n.Add(ctx, files.NewMapDirectory(map[string]files.Node{"x": files.NewBytesFile([]byte("x"))}))
	if err != nil {
		t.Fatal(err)
	}
	versions := []ipfs.Entry{
		{CID: add(t, ctx, n, []byte("first"))},
		{CID: tree, IsDir: true},
		{CID: add(t, ctx, n, []byte("second"))},
	}
	p := dir + "/entry"
	if err := n.Link(ctx, p, versions[0].CID); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var missed []error
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := n.Stat(ctx, p)
				if err == nil {
					_, err = n.List(ctx, dir)
				}
				if err != nil {
					mu.Lock()
					missed = append(missed, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range 60 {
		if err := n.Link(ctx, p, versions[(i+1)%len(versions)].CID); err != nil {
			t.Errorf("Link, replacing: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	if len(missed) > 0 {
		t.Errorf("%d lookups failed while %s was replaced, the first: %v", len(missed), p, missed[0])
	}
	if e, err := n.Stat(ctx, p); err != nil || e.CID != versions[60%len(versions)].CID {
		t.Errorf("after the replacements, Stat = %+v, %v; want CID %s", e, err, versions[60%len(versions)].CID)
	}
}

// testMoveReplaces moves entries onto a file and onto a directory: each takes the place
// of what was there, rather than going into the directory.
func testMoveReplaces(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	f, g := add(t, ctx, n, []byte("f")), add(t, ctx, n, []byte("g"))
	for _, step := range []struct{ p string }{{"/a"}, {"/dir/x"}, {"/b"}} {
		if err := n.Link(ctx, dir+step.p, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Move(ctx, dir+"/a", dir+"/dir"); err != nil {
		t.Fatalf("Move onto a directory: %v", err)
	}
	if e, err := n.Stat(ctx, dir+"/dir"); err != nil || e.IsDir || e.CID != f {
		t.Errorf("after Move onto a directory, Stat = %+v, %v; want the file moved", e, err)
	}
	if err := n.Link(ctx, dir+"/c", g); err != nil {
		t.Fatal(err)
	}
	if err := n.Move(ctx, dir+"/c", dir+"/b"); err != nil {
		t.Fatalf("Move onto a file: %v", err)
	}
	if b := readAll(t, ctx, n, dir+"/b", 0); string(b) != "g" {
		t.Errorf("after Move onto a file, it reads %q, want %q", b, "g")
	}
	for _, gone := range []string{"/a", "/c"} {
		if _, err := n.Stat(ctx, dir+gone); !errors.Is(err, ipfs.ErrNotFound) {
			t.Errorf("Stat(%s) after Move = %v, want ErrNotFound", gone, err)
		}
	}
}
