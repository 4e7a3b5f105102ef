package ipfstest

import (
	"context"
	"fmt"
	"testing"

	"github.com/ipfs/boxo/files"

	"github.com/discoregistry/disco/internal/ipfs"
)

// goldenLargeTree is the CID of largeTree, as `ipfs add -r` with the flags of golden
// prints it in a repository with Kubo's unixfs-v1-2025 profile.
const goldenLargeTree = "bafybeihggntwmqnj7f5oq7b3wtuu3xzphwjbqaa7oiivcqxala75z5lena"

// largeTree is a directory whose block would be a little over ipfs.Import.HAMTThreshold,
// which makes it a HAMT shard. Its links alone are a little under, so a node that
// estimates sizes from links (Kubo's default) makes a basic directory of it instead.
func largeTree() files.Directory {
	m := map[string]files.Node{}
	for i := range 3300 {
		m[fmt.Sprintf("%040d", i)] = files.NewBytesFile([]byte(fmt.Sprint(i)))
	}
	return files.NewMapDirectory(m)
}

func testAddLargeDirectory(t *testing.T, ctx context.Context, n ipfs.Node, _ string) {
	c, err := n.Add(ctx, largeTree())
	if err != nil {
		t.Fatal(err)
	}
	if c.String() != goldenLargeTree {
		t.Errorf("large directory CID = %s, want %s", c, goldenLargeTree)
	}
	root := "/ipfs/" + c.String()
	es, err := n.List(ctx, root)
	if err != nil || len(es) != 3300 {
		t.Fatalf("List(large directory) = %d entries, %v; want 3300", len(es), err)
	}
	if e := es[1234]; e.Name != fmt.Sprintf("%040d", 1234) || e.Size != 4 || e.IsDir {
		t.Errorf("entry 1234 = %+v", e)
	}
	if got := readAll(t, ctx, n, root+"/"+fmt.Sprintf("%040d", 42), 0); string(got) != "42" {
		t.Errorf("a file of the large directory reads %q", got)
	}
}

// goldenDotTree is the CID of the tree testAddEverything adds, as `ipfs add -r --hidden`
// with the flags of golden prints it.
const goldenDotTree = "bafybeihp6hlgfgwj5goduxvsz33rwwx4xvawgxir3ryngvbfokbwbqifse"

// testAddEverything adds a tree with a dot file and an empty directory: Add leaves
// nothing out.
func testAddEverything(t *testing.T, ctx context.Context, n ipfs.Node, _ string) {
	c, err := n.Add(ctx, files.NewMapDirectory(map[string]files.Node{
		".hidden": files.NewBytesFile([]byte("h")),
		"empty":   files.NewMapDirectory(nil),
		"sub":     files.NewMapDirectory(map[string]files.Node{"a": files.NewBytesFile([]byte("a"))}),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.String() != goldenDotTree {
		t.Errorf("tree with a dot file and an empty directory: CID %s, want %s", c, goldenDotTree)
	}
}
