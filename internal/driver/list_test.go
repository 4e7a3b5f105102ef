package driver

import (
	"context"
	"slices"
	"testing"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/discoregistry/disco/internal/ipfs"
)

// testListSkipsInvalidNames lists a directory from the network that holds entries whose
// names are not path elements: List leaves them out.
func testListSkipsInvalidNames(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	d := newDriver(t, node)
	if err := d.PutContent(ctx, "/dir/sub/f", []byte("x")); err != nil {
		t.Fatal(err)
	}
	sub, err := node.Stat(ctx, d.inner().mfs("/dir/sub"))
	if err != nil {
		t.Fatal(err)
	}
	dir := merkledag.NodeWithData(ft.FolderPBData())
	for _, name := range []string{"", ".", "..", "a/b", "ok"} {
		if err := dir.AddRawLink(name, &ipld.Link{Cid: sub.CID}); err != nil {
			t.Fatal(err)
		}
	}
	// Added as a file, the directory's block is a raw block under the same multihash.
	if _, err := node.Add(ctx, files.NewBytesFile(dir.RawData())); err != nil {
		t.Fatal(err)
	}
	c := cid.NewCidV1(cid.DagProtobuf, dir.Cid().Hash())
	if err := node.Link(ctx, d.inner().mfs("/hostile"), c); err != nil {
		t.Fatal(err)
	}
	got, err := d.List(ctx, "/hostile")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"/hostile/ok"}) {
		t.Errorf("List = %q, want only /hostile/ok", got)
	}
}
