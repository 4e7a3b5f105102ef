// Package ipfs describes an IPFS node as Disco uses it: a mutable file system (MFS) to keep
// the registry in, an importer with fixed parameters so that identical bytes always get the
// same CID, and reads of content by CID from the network. Implementations live in
// sub-packages; ipfstest holds the suite they all pass.
package ipfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
)

// Node is an IPFS node as Disco uses it.
//
// Paths are MFS paths ("/docker/registry/v2/...") or, where noted, IPFS paths
// ("/ipfs/<cid>/sub/path"). A missing path gives an error that matches ErrNotFound.
type Node interface {
	// Stat describes the entry at p, an MFS or IPFS path.
	Stat(ctx context.Context, p string) (Entry, error)
	// List returns the entries of the directory at p, an MFS or IPFS path, sorted by name.
	List(ctx context.Context, p string) ([]Entry, error)
	// Read streams the file at p, an MFS or IPFS path, from offset. An offset past the end
	// gives an empty stream.
	Read(ctx context.Context, p string, offset int64) (io.ReadCloser, error)

	// Add imports a file or a directory tree with Disco's import parameters (see Import)
	// and returns its CID. Nothing is placed in MFS.
	Add(ctx context.Context, n files.Node) (cid.Cid, error)
	// Join returns the CID of the file made of parts, in order, and adds what it needs for
	// that: the same DAG and CID as Add of the whole file. Each part is a file of
	// Import.ChunkSize bytes, but the last, which may be shorter, added with Add (so one
	// raw block). Join of no parts is an error.
	Join(ctx context.Context, parts []Part) (cid.Cid, error)
	// Fetch makes the whole DAG under c local, from the network if need be.
	Fetch(ctx context.Context, c cid.Cid) error
	// Links returns the links of the local block c, as they are: a directory's entries,
	// a file's parts, nothing for a raw block. A block that is not local is not found.
	Links(ctx context.Context, c cid.Cid) ([]Link, error)

	// Link places the DAG c at the MFS path p, creating missing parent directories and
	// replacing what was at p.
	Link(ctx context.Context, p string, c cid.Cid) error
	// Move moves the MFS entry src to dst, creating missing parent directories of dst and
	// replacing what was at dst.
	Move(ctx context.Context, src, dst string) error
	// Remove removes the MFS entry p and everything below it.
	Remove(ctx context.Context, p string) error
	// Flush persists the MFS tree: nothing changed before Flush returns is lost if the
	// process dies afterwards.
	Flush(ctx context.Context) error

	// Identity returns the node's peer ID and the addresses other nodes can dial.
	Identity(ctx context.Context) (Identity, error)
}

// Host is the role of a Node that gives access to its libp2p host, for protocols of
// Disco's own between Discos (a mirror asks its peers for content by digest). The
// embedded node has one; a Kubo daemon's is out of reach over its RPC API.
type Host interface {
	// Host returns the node's libp2p host, or nil if the node is offline.
	Host() host.Host
}

// Entry describes a file or directory.
type Entry struct {
	Name  string
	IsDir bool
	Size  int64 // file size in bytes; 0 for directories
	CID   cid.Cid
}

// Link is a link of a block to another: its name, and the size of the linked DAG as the
// linking block records it.
type Link struct {
	Name string
	CID  cid.Cid
	Size uint64
}

// Part is a piece of a file added on its own, for Join.
type Part struct {
	CID  cid.Cid
	Size int64
}

// Identity is a node's peer ID and the full multiaddrs ("/ip4/.../p2p/<id>") it listens on.
type Identity struct {
	ID        string   `json:"id"`
	Addresses []string `json:"addresses"`
}

// ErrNotFound is matched (errors.Is) by errors about missing paths or content.
var ErrNotFound = errors.New("not found")

// ErrUnavailable is matched by errors of a node that cannot be reached: a Kubo daemon
// that is down, or does not answer.
var ErrUnavailable = errors.New("ipfs node unavailable")

// ErrNotDir and ErrIsDir report a path of the wrong kind.
var (
	ErrNotDir = errors.New("not a directory")
	ErrIsDir  = errors.New("is a directory")
)

// Import holds the parameters every Disco uses to turn bytes into a UnixFS DAG. They are
// part of Disco's storage format: the same bytes give the same CID on every Disco and with
// `ipfs add --cid-version=1 --raw-leaves --chunker=size-1048576 --max-file-links=1024`,
// which is Kubo's unixfs-v1-2025 import profile (IPIP-499). Directories are basic UnixFS
// directories until their estimated size passes HAMTThreshold, then HAMT shards.
var Import = struct {
	CIDVersion   int
	HashFunction string
	RawLeaves    bool
	ChunkSize    int
	MaxFileLinks int
	Layout       string

	HAMTFanout     int    // links per HAMT shard node
	HAMTThreshold  uint64 // bytes
	HAMTEstimation string // how a directory's size is estimated: "block", its whole block
}{
	CIDVersion:   1,
	HashFunction: "sha2-256",
	RawLeaves:    true,
	ChunkSize:    1 << 20,
	MaxFileLinks: 1024,
	Layout:       "balanced",

	HAMTFanout:     256,
	HAMTThreshold:  256 << 10,
	HAMTEstimation: "block",
}

// SortEntries sorts es by name, as List returns them. Directories list their entries in
// name order, but HAMT shards in the order of the names' hashes.
func SortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
}

// IsIPFSPath reports whether p names immutable content ("/ipfs/<cid>...") rather than MFS.
func IsIPFSPath(p string) bool {
	return strings.HasPrefix(p, "/ipfs/")
}

// ReadFile reads the whole file at p, refusing one larger than limit bytes.
func ReadFile(ctx context.Context, n Node, p string, limit int64) ([]byte, error) {
	r, err := n.Read(ctx, p, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, limit)
	}
	return b, nil
}

// Namer is implemented by a Node that lists a directory's names for less than List costs:
// List describes every entry, which for a large directory means reading each one.
// Found by type assertion; Names does that.
type Namer interface {
	// Names returns the names in the directory at p, an MFS or IPFS path, sorted.
	Names(ctx context.Context, p string) ([]string, error)
}

// Names returns the names in the directory at p, sorted, through Namer if n is one.
func Names(ctx context.Context, n Node, p string) ([]string, error) {
	if nm, ok := n.(Namer); ok {
		return nm.Names(ctx, p)
	}
	return ListNames(ctx, n, p)
}

// ListNames returns the names of the entries of the directory p from a List of it.
func ListNames(ctx context.Context, n Node, p string) ([]string, error) {
	es, err := n.List(ctx, p)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name
	}
	return names, nil
}
