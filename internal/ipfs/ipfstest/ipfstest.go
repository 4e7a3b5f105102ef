// Package ipfstest is the test suite every ipfs.Node implementation passes.
package ipfstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Run runs the suite against n. Each test works under its own MFS directory, so n may be
// shared with other tests.
func Run(t *testing.T, n ipfs.Node) {
	tests := []struct {
		name string
		f    func(*testing.T, context.Context, ipfs.Node, string)
	}{
		{"AddIsCanonical", testAddIsCanonical},
		{"AddDirectory", testAddDirectory},
		{"AddLargeDirectory", testAddLargeDirectory},
		{"AddEverything", testAddEverything},
		{"Join", testJoin},
		{"LinkStatRead", testLinkStatRead},
		{"LinkReplaces", testLinkReplaces},
		{"ReplaceUnderReaders", testReplaceUnderReaders},
		{"List", testList},
		{"Move", testMove},
		{"MoveReplaces", testMoveReplaces},
		{"Remove", testRemove},
		{"NotFound", testNotFound},
		{"IPFSPaths", testIPFSPaths},
		{"Links", testLinks},
		{"Cancelled", testCancelled},
		{"Concurrent", testConcurrent},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dir := fmt.Sprintf("/ipfstest-%d-%d", time.Now().UnixNano(), i)
			tt.f(t, ctx, n, dir)
			if err := n.Remove(ctx, dir); err != nil && !errors.Is(err, ipfs.ErrNotFound) {
				t.Errorf("clean up %s: %v", dir, err)
			}
		})
	}
}

// Content returns size pseudo-random bytes that are the same in every run.
func Content(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Golden CIDs of Content(size, 1), as `ipfs add --cid-version=1 --raw-leaves
// --chunker=size-1048576 --max-file-links=1024` (Kubo v0.42.0) prints them.
var golden = map[int]string{
	0:         "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
	1:         "bafkreia7dbhrahdh2wc3uagsjt66g2dd65d7xk46qsxxoyhmo4pjwnwkke",
	256 << 10: "bafkreibjgix3o6wztfahk3quawufl5h5yhjpqvjgzq6yi7txonhhb7ayq4",
	1 << 20:   "bafkreicbdatot7shpew6bva4vfatm3r52gnmhnin326rs5pfclxbeov7b4",
	1<<20 + 1: "bafybeiha2uvovgrjs5z34dric5evyszbus3iulslh5yzmkkw2kmpriyjza",
	5<<20 + 3: "bafybeihmwy2apnnpvta7vosrnbelf6nxovfmhaxjxbkwvimokvvwhzjrbi",
}

// goldenTree is the CID of the tree testAddDirectory adds, as `ipfs add -r` with the
// flags above prints it.
const goldenTree = "bafybeiequ27rskdc7y3itczhbysguzzaiwm5c2da7n4zs6g4vvkqxzc7iq"

func add(t *testing.T, ctx context.Context, n ipfs.Node, b []byte) cid.Cid {
	t.Helper()
	c, err := n.Add(ctx, files.NewBytesFile(b))
	if err != nil {
		t.Fatalf("Add(%d bytes): %v", len(b), err)
	}
	return c
}

func readAll(t *testing.T, ctx context.Context, n ipfs.Node, p string, off int64) []byte {
	t.Helper()
	r, err := n.Read(ctx, p, off)
	if err != nil {
		t.Fatalf("Read(%s, %d): %v", p, off, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return b
}

func testAddIsCanonical(t *testing.T, ctx context.Context, n ipfs.Node, _ string) {
	for size, want := range golden {
		if got := add(t, ctx, n, Content(size, 1)); got.String() != want {
			t.Errorf("Add(%d bytes) = %s, want %s", size, got, want)
		}
	}
	// The same bytes, however they arrive, give the same CID.
	b := Content(3<<20+17, 2)
	first := add(t, ctx, n, b)
	again, err := n.Add(ctx, files.NewReaderFile(io.MultiReader(bytes.NewReader(b[:5]), bytes.NewReader(b[5:]))))
	if err != nil {
		t.Fatal(err)
	}
	if first != again {
		t.Errorf("same bytes, different CIDs: %s and %s", first, again)
	}
	if first.Version() != 1 {
		t.Errorf("CID %s is not v1", first)
	}
}

// testJoin joins files added chunk by chunk and checks that the result is the file.
func testJoin(t *testing.T, ctx context.Context, n ipfs.Node, _ string) {
	for _, size := range []int{1 << 20, 1<<20 + 1, 5<<20 + 3} {
		b := Content(size, 1)
		var parts []ipfs.Part
		for off := 0; off < len(b); off += ipfs.Import.ChunkSize {
			part := b[off:min(off+ipfs.Import.ChunkSize, len(b))]
			parts = append(parts, ipfs.Part{CID: add(t, ctx, n, part), Size: int64(len(part))})
		}
		c, err := n.Join(ctx, parts)
		if err != nil {
			t.Fatalf("Join(%d parts): %v", len(parts), err)
		}
		if c.String() != golden[size] {
			t.Errorf("Join of %d bytes = %s, want %s", size, c, golden[size])
		}
		if got := readAll(t, ctx, n, "/ipfs/"+c.String(), 0); !bytes.Equal(got, b) {
			t.Errorf("Join of %d bytes: read back %d bytes that differ", size, len(got))
		}
	}
	if _, err := n.Join(ctx, nil); err == nil {
		t.Error("Join of no parts succeeded")
	}
}

func testAddDirectory(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	tree := files.NewMapDirectory(map[string]files.Node{
		"a.txt": files.NewBytesFile([]byte("a")),
		"sub":   files.NewMapDirectory(map[string]files.Node{"b.txt": files.NewBytesFile([]byte("bb"))}),
	})
	c, err := n.Add(ctx, tree)
	if err != nil {
		t.Fatal(err)
	}
	if c.String() != goldenTree {
		t.Errorf("directory CID = %s, want %s", c, goldenTree)
	}
	if got := readAll(t, ctx, n, "/ipfs/"+c.String()+"/sub/b.txt", 0); string(got) != "bb" {
		t.Errorf("sub/b.txt = %q", got)
	}
	again, err := n.Add(ctx, files.NewMapDirectory(map[string]files.Node{
		"sub":   files.NewMapDirectory(map[string]files.Node{"b.txt": files.NewBytesFile([]byte("bb"))}),
		"a.txt": files.NewBytesFile([]byte("a")),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c != again {
		t.Errorf("same tree, different CIDs: %s and %s", c, again)
	}
}

func testLinkStatRead(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	b := Content(2<<20+100, 3)
	c := add(t, ctx, n, b)
	p := dir + "/a/b/file"
	if err := n.Link(ctx, p, c); err != nil {
		t.Fatalf("Link: %v", err)
	}
	e, err := n.Stat(ctx, p)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if e.IsDir || e.Size != int64(len(b)) || e.CID != c || e.Name != "file" {
		t.Errorf("Stat = %+v, want file of %d bytes with CID %s", e, len(b), c)
	}
	d, err := n.Stat(ctx, dir+"/a/b")
	if err != nil || !d.IsDir {
		t.Errorf("Stat(parent) = %+v, %v; want a directory", d, err)
	}
	for _, off := range []int64{0, 1, 1 << 20, int64(len(b)) - 1, int64(len(b)), int64(len(b)) + 10} {
		want := b[min(off, int64(len(b))):]
		if got := readAll(t, ctx, n, p, off); !bytes.Equal(got, want) {
			t.Errorf("Read at %d: got %d bytes, want %d", off, len(got), len(want))
		}
	}
	if err := n.Flush(ctx); err != nil {
		t.Errorf("Flush: %v", err)
	}
}

func testLinkReplaces(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	p := dir + "/f"
	for _, s := range []string{"first", "second, longer"} {
		if err := n.Link(ctx, p, add(t, ctx, n, []byte(s))); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, ctx, n, p, 0); string(got) != s {
			t.Errorf("after Link: %q, want %q", got, s)
		}
	}
	// A directory can be replaced by a file, too.
	if err := n.Link(ctx, dir+"/d/x", add(t, ctx, n, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	if err := n.Link(ctx, dir+"/d", add(t, ctx, n, []byte("now a file"))); err != nil {
		t.Fatal(err)
	}
	if e, err := n.Stat(ctx, dir+"/d"); err != nil || e.IsDir {
		t.Errorf("Stat(d) = %+v, %v; want a file", e, err)
	}
}

func testList(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	c := add(t, ctx, n, []byte("x"))
	names := []string{"b", "a", "c.d", "_x"}
	for _, name := range names {
		if err := n.Link(ctx, dir+"/"+name, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Link(ctx, dir+"/sub/f", c); err != nil {
		t.Fatal(err)
	}
	es, err := n.List(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Name)
		if e.IsDir != (e.Name == "sub") {
			t.Errorf("%s: IsDir = %v", e.Name, e.IsDir)
		}
		if !e.IsDir && e.Size != 1 {
			t.Errorf("%s: Size = %d, want 1", e.Name, e.Size)
		}
	}
	want := append(names, "sub")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if _, err := n.List(ctx, dir+"/a"); !errors.Is(err, ipfs.ErrNotDir) {
		t.Errorf("List(file) error = %v, want ErrNotDir", err)
	}
}

func testMove(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	c := add(t, ctx, n, []byte("moved"))
	if err := n.Link(ctx, dir+"/src/f", c); err != nil {
		t.Fatal(err)
	}
	if err := n.Link(ctx, dir+"/dst/g", add(t, ctx, n, []byte("old"))); err != nil {
		t.Fatal(err)
	}
	if err := n.Move(ctx, dir+"/src/f", dir+"/dst/g"); err != nil {
		t.Fatalf("Move: %v", err)
	}
	if got := readAll(t, ctx, n, dir+"/dst/g", 0); string(got) != "moved" {
		t.Errorf("dst = %q", got)
	}
	if _, err := n.Stat(ctx, dir+"/src/f"); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("src after Move: %v, want ErrNotFound", err)
	}
	if err := n.Move(ctx, dir+"/dst/g", dir+"/new/parents/h"); err != nil {
		t.Fatalf("Move to new parents: %v", err)
	}
	if err := n.Move(ctx, dir+"/missing", dir+"/new/parents/h"); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("Move(missing) = %v, want ErrNotFound", err)
	}
	if got := readAll(t, ctx, n, dir+"/new/parents/h", 0); string(got) != "moved" {
		t.Errorf("failed Move changed the destination: %q", got)
	}
}

func testRemove(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	c := add(t, ctx, n, []byte("x"))
	for _, p := range []string{"/t/a", "/t/b/c", "/tt"} {
		if err := n.Link(ctx, dir+p, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Remove(ctx, dir+"/t"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := n.Stat(ctx, dir+"/t/b/c"); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("Stat after Remove: %v", err)
	}
	if _, err := n.Stat(ctx, dir+"/tt"); err != nil {
		t.Errorf("Remove(t) removed its sibling tt: %v", err)
	}
	if err := n.Remove(ctx, dir+"/t"); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("Remove(missing) = %v, want ErrNotFound", err)
	}
}

func testNotFound(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	if err := n.Link(ctx, dir+"/file", add(t, ctx, n, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir + "/missing", dir + "/file/below", "/ipfs/" + add(t, ctx, n, []byte("y")).String() + "/no"} {
		if _, err := n.Stat(ctx, p); !errors.Is(err, ipfs.ErrNotFound) {
			t.Errorf("Stat(%s) = %v, want ErrNotFound", p, err)
		}
		if _, err := n.Read(ctx, p, 0); !errors.Is(err, ipfs.ErrNotFound) {
			t.Errorf("Read(%s) = %v, want ErrNotFound", p, err)
		}
		if _, err := n.List(ctx, p); !errors.Is(err, ipfs.ErrNotFound) {
			t.Errorf("List(%s) = %v, want ErrNotFound", p, err)
		}
	}
	if _, err := n.Read(ctx, dir, 0); !errors.Is(err, ipfs.ErrIsDir) {
		t.Errorf("Read(dir) = %v, want ErrIsDir", err)
	}
}

func testIPFSPaths(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	big := Content(1<<20+5, 4)
	c, err := n.Add(ctx, files.NewMapDirectory(map[string]files.Node{
		"d": files.NewMapDirectory(map[string]files.Node{"big": files.NewBytesFile(big)}),
	}))
	if err != nil {
		t.Fatal(err)
	}
	root := "/ipfs/" + c.String()
	if err := n.Fetch(ctx, c); err != nil {
		t.Errorf("Fetch(local): %v", err)
	}
	es, err := n.List(ctx, root+"/d")
	if err != nil || len(es) != 1 || es[0].Name != "big" || es[0].Size != int64(len(big)) || es[0].IsDir {
		t.Errorf("List = %+v, %v", es, err)
	}
	if e, err := n.Stat(ctx, root+"/d"); err != nil || !e.IsDir {
		t.Errorf("Stat(dir) = %+v, %v", e, err)
	}
	if got := readAll(t, ctx, n, root+"/d/big", 1<<20); !bytes.Equal(got, big[1<<20:]) {
		t.Errorf("Read(big, 1MiB) = %d bytes", len(got))
	}
	// A raw leaf by its own CID: the last 5 bytes of big.
	e, err := n.Stat(ctx, root+"/d/big")
	if err != nil {
		t.Fatal(err)
	}
	links, err := n.Links(ctx, e.CID)
	if err != nil || len(links) != 2 {
		t.Fatalf("Links(big) = %+v, %v", links, err)
	}
	if e, err := n.Stat(ctx, "/ipfs/"+links[1].CID.String()); err != nil || e.Size != 5 || e.IsDir || e.CID != links[1].CID {
		t.Errorf("Stat(leaf) = %+v, %v; want 5 bytes", e, err)
	}
	// Content placed in MFS keeps its CID.
	if err := n.Link(ctx, dir+"/copy", c); err != nil {
		t.Fatal(err)
	}
	if e, err := n.Stat(ctx, dir+"/copy"); err != nil || e.CID != c {
		t.Errorf("Stat(copy) = %+v, %v; want CID %s", e, err, c)
	}
}

func testLinks(t *testing.T, ctx context.Context, n ipfs.Node, _ string) {
	b := Content(2<<20+7, 5)
	file := add(t, ctx, n, b)
	ls, err := n.Links(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 3 || ls[0].Size != 1<<20 || ls[2].Size != 7 || ls[0].Name != "" {
		t.Errorf("Links(file of 2 MiB + 7) = %+v, want three parts of 1 MiB, 1 MiB and 7 bytes", ls)
	}
	if ls, err := n.Links(ctx, ls[2].CID); err != nil || len(ls) != 0 {
		t.Errorf("Links(raw block) = %+v, %v; want none", ls, err)
	}
	dir, err := n.Add(ctx, files.NewMapDirectory(map[string]files.Node{"f": files.NewBytesFile([]byte("x"))}))
	if err != nil {
		t.Fatal(err)
	}
	if ls, err := n.Links(ctx, dir); err != nil || len(ls) != 1 || ls[0].Name != "f" {
		t.Errorf("Links(directory) = %+v, %v; want its entry f", ls, err)
	}
	missing, _ := cid.V1Builder{Codec: cid.Raw, MhType: multihash.SHA2_256}.Sum([]byte("nobody added this"))
	if _, err := n.Links(ctx, missing); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("Links(missing) = %v, want ErrNotFound", err)
	}
}

func testCancelled(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := n.Stat(cctx, "/"); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat with a cancelled context = %v", err)
	}
	if err := n.Link(cctx, dir+"/x", add(t, ctx, n, []byte("x"))); !errors.Is(err, context.Canceled) {
		t.Errorf("Link with a cancelled context = %v", err)
	}
}

func testConcurrent(t *testing.T, ctx context.Context, n ipfs.Node, dir string) {
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Go(func() {
			p := fmt.Sprintf("%s/%d/f", dir, i%4)
			p = fmt.Sprintf("%s-%d", p, i)
			want := fmt.Sprintf("content %d", i)
			c, err := n.Add(ctx, files.NewBytesFile([]byte(want)))
			if err == nil {
				err = n.Link(ctx, p, c)
			}
			if err == nil {
				err = n.Flush(ctx)
			}
			if err != nil {
				errs <- err
				return
			}
			r, err := n.Read(ctx, p, 0)
			if err != nil {
				errs <- err
				return
			}
			defer r.Close()
			if got, _ := io.ReadAll(r); string(got) != want {
				errs <- fmt.Errorf("%s = %q, want %q", p, got, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range 4 {
		es, err := n.List(ctx, fmt.Sprintf("%s/%d", dir, i))
		if err != nil || len(es) != 4 {
			t.Errorf("dir %d: %d entries, %v; want 4", i, len(es), err)
		}
	}
}
