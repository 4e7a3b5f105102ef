package ipfs

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	mdtest "github.com/ipfs/boxo/ipld/merkledag/test"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// TestJoinIsTheImportersDAG checks joinDAG against UnixFS's balanced importer, with
// chunks and fan-out small enough for DAGs of one to four levels.
func TestJoinIsTheImportersDAG(t *testing.T) {
	ctx := context.Background()
	dag := mdtest.Mock()
	const chunk, maxLinks = 16, 4
	for _, size := range []int{1, chunk, chunk + 1, maxLinks * chunk, maxLinks*chunk + 3, 17*chunk - 5, 64 * chunk, 64*chunk + 1, 100 * chunk} {
		r := rand.New(rand.NewPCG(uint64(size), 3))
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		params := helpers.DagBuilderParams{Dagserv: dag, RawLeaves: true, Maxlinks: maxLinks, CidBuilder: DagPBPrefix}
		db, err := params.New(chunker.NewSizeSplitter(bytes.NewReader(b), chunk))
		if err != nil {
			t.Fatal(err)
		}
		want, err := balanced.Layout(db)
		if err != nil {
			t.Fatal(err)
		}
		var parts []Part
		for off := 0; off < len(b); off += chunk {
			leaf, err := merkledag.NewRawNodeWPrefix(b[off:min(off+chunk, len(b))], cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1})
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, Part{CID: leaf.Cid(), Size: int64(len(leaf.RawData()))})
		}
		got, err := joinDAG(ctx, parts, maxLinks, dag.Add)
		if err != nil {
			t.Fatal(err)
		}
		if got != want.Cid() {
			t.Errorf("%d bytes: join gives %s, the importer %s", size, got, want.Cid())
		}
	}
}
