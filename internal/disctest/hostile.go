package disctest

import (
	"slices"
	"strings"
	"testing"

	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

// Hand-made IPFS content, built the way an attacker would: every block is pushed to a
// Disco as an ordinary blob, which its node keeps as a raw block under the blob's
// multihash, and serves to the network under any CID with that multihash, a dag-pb one
// included. Names, sizes and links are whatever the test says, with no check at all.

// Remote returns a Disco that stands for a registry run elsewhere, at host, such as a disco
// process of an end-to-end test: only the client helpers (PutBlob and the builders below)
// work on it.
func Remote(host string) *Disco { return &Disco{Host: host} }

// Dir is a UnixFS directory made by hand: its links, in the order given.
type Dir []Link

// Link is an entry of a Dir: Node is a file's bytes ([]byte), a directory (Dir) or any
// content already made (cid.Cid, with Size its file size).
type Link struct {
	Name string
	Node any
	Size uint64
}

// TreeOf turns files by slash-separated path, as ReadTree returns them, into a Dir.
func TreeOf(byPath map[string][]byte) Dir {
	var d Dir
	subs := map[string]map[string][]byte{}
	for p, b := range byPath {
		first, rest, isDir := strings.Cut(p, "/")
		if !isDir {
			d = append(d, Link{Name: first, Node: b})
			continue
		}
		if subs[first] == nil {
			subs[first] = map[string][]byte{}
		}
		subs[first][rest] = b
	}
	for name, sub := range subs {
		d = append(d, Link{Name: name, Node: TreeOf(sub)})
	}
	slices.SortFunc(d, func(a, b Link) int { return strings.Compare(a.Name, b.Name) })
	return d
}

// With returns d with l added, or put in place of the entry of the same name.
func (d Dir) With(l Link) Dir {
	out := slices.DeleteFunc(slices.Clone(d), func(x Link) bool { return x.Name == l.Name })
	return append(out, l)
}

// PushTree pushes dir, block by block, as blobs of the repository repo, and returns the
// CID v1 of its root.
func (d *Disco) PushTree(t *testing.T, repo string, dir Dir) cid.Cid {
	t.Helper()
	nd := merkledag.NodeWithData(ft.FolderPBData())
	for _, l := range dir {
		c, size := d.pushLinked(t, repo, l)
		// AddRawLink keeps names as they are, and the links in the order added.
		if err := nd.AddRawLink(l.Name, &ipld.Link{Cid: c, Size: size}); err != nil {
			t.Fatal(err)
		}
	}
	return d.PushNode(t, repo, nd)
}

func (d *Disco) pushLinked(t *testing.T, repo string, l Link) (cid.Cid, uint64) {
	t.Helper()
	switch n := l.Node.(type) {
	case []byte:
		d.PutBlob(t, repo, n)
		return rawCID(t, n), uint64(len(n))
	case Dir:
		c := d.PushTree(t, repo, n)
		return c, 0
	case cid.Cid:
		return n, l.Size
	}
	t.Fatalf("link %q: a Node of type %T", l.Name, l.Node)
	return cid.Undef, 0
}

// PushNode pushes the block of a dag-pb node as a blob of repo and returns its CID v1.
func (d *Disco) PushNode(t *testing.T, repo string, nd *merkledag.ProtoNode) cid.Cid {
	t.Helper()
	b := nd.RawData()
	d.PutBlob(t, repo, b)
	return cid.NewCidV1(cid.DagProtobuf, sum(t, b))
}

// PushFile pushes a UnixFS file node made by hand: links to the given content, each
// declared to hold size bytes, whatever it holds. A few blocks may so claim any size.
func (d *Disco) PushFile(t *testing.T, repo string, size uint64, links ...cid.Cid) cid.Cid {
	t.Helper()
	fsn := ft.NewFSNode(ft.TFile)
	nd := new(merkledag.ProtoNode)
	for _, c := range links {
		if err := nd.AddRawLink("", &ipld.Link{Cid: c, Size: size}); err != nil {
			t.Fatal(err)
		}
		fsn.AddBlockSize(size)
	}
	data, err := fsn.GetBytes()
	if err != nil {
		t.Fatal(err)
	}
	nd.SetData(data)
	return d.PushNode(t, repo, nd)
}

// PushChunks pushes b as a UnixFS file of raw leaves of chunk bytes under one node, as no
// Disco would import it, and returns its CID.
func (d *Disco) PushChunks(t *testing.T, repo string, b []byte, chunk int) cid.Cid {
	t.Helper()
	fsn := ft.NewFSNode(ft.TFile)
	nd := new(merkledag.ProtoNode)
	for off := 0; off < len(b); off += chunk {
		part := b[off:min(off+chunk, len(b))]
		if err := nd.AddRawLink("", &ipld.Link{Cid: d.PushRaw(t, repo, part), Size: uint64(len(part))}); err != nil {
			t.Fatal(err)
		}
		fsn.AddBlockSize(uint64(len(part)))
	}
	data, err := fsn.GetBytes()
	if err != nil {
		t.Fatal(err)
	}
	nd.SetData(data)
	return d.PushNode(t, repo, nd)
}

// PushRaw pushes b as a blob of repo and returns the CID of its raw block.
func (d *Disco) PushRaw(t *testing.T, repo string, b []byte) cid.Cid {
	t.Helper()
	d.PutBlob(t, repo, b)
	return rawCID(t, b)
}

func rawCID(t *testing.T, b []byte) cid.Cid { return cid.NewCidV1(cid.Raw, sum(t, b)) }

func sum(t *testing.T, b []byte) mh.Multihash {
	t.Helper()
	h, err := mh.Sum(b, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
