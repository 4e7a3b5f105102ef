package embedded

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	gopath "path"
	"slices"
	"strings"

	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/discoregistry/disco/internal/ipfs"
)

// A tree is the node's MFS tree as Disco keeps it in memory, in place of boxo's mfs.
//
// boxo's mfs keeps every directory it has looked at, rebuilds all of them (re-adding each
// child) whenever the root's CID is asked for, as every checkpoint does, and rebuilds
// every child of a directory it lists; nothing it keeps is dropped but by a write. With a
// registry of thousands of repositories that made checkpoints, listings and closing cost
// about as much as the whole registry. The tree instead keeps:
//
//   - for each directory it has loaded, a listing: names, CIDs, and kinds once known;
//   - for a directory changed since it was last written, the UnixFS directory being
//     changed, and which subdirectories it must link anew;
//
// and writes, when a CID is asked for, only the directories changed since they were last
// written. Clean directories are dropped, least recently used first, once the listings
// hold more than maxEntries entries, each directory held counting as dirCost more. The on-disk format is UnixFS's, as boxo's mfs writes
// it: the same directories, HAMT shards past ipfs.Import.HAMTThreshold.
//
// A tree is not safe for concurrent use: the node's mu guards it. Its operations never
// drop a directory in the middle; trim does, between operations.
type tree struct {
	dag        ipld.DAGService // pending, over the blockstore alone: what MFS links is local
	pending    *pendingDAG
	blockSize  func(ctx context.Context, c cid.Cid) (int, error)
	root       *dir
	lru        list.List // of *dir: clean, current in their parent, most recently used first
	entries    int       // entries in the listings of the directories held
	maxEntries int
	counts     treeCounts
	// lastDir is the directory node read last, by describe or read: a walk describes an
	// entry, to learn that it is a directory, lists it, and describes what it lists,
	// which looks it up, and it need not be read from the blockstore for each.
	lastDir ipld.Node
	// fileSizes are the sizes of files described.
	fileSizes fileSizes
	// pauseAt, when not 0, is the count of directories written at which write pauses.
	pauseAt int
}

// errPaused is write's error once it has written up to tree.pauseAt: what it wrote
// stays written, the rest stays changed, and writing again goes on from there.
var errPaused = errors.New("mfs: write paused")

// treeCounts counts the directories a tree read and wrote.
type treeCounts struct {
	loaded, written int
}

// defaultMaxEntries bounds what a tree holds: about 20 MiB. An entry takes about 100
// bytes in two objects, a directory held about 400 in three or four: dirCost entries, as
// the garbage collector, which scans them all at each cycle, counts.
const (
	defaultMaxEntries = 1 << 17
	dirCost           = 4
)

// A dir is a directory the tree holds.
type dir struct {
	parent *dir
	name   string
	cid    cid.Cid         // as last written; undefined if never written
	node   ipld.Node       // as last written, until the parent links it
	ents   []entry         // sorted by name
	kids   map[string]*dir // subdirectories held
	ud     uio.Directory   // the directory being changed, while dirty; nil if only kids changed
	stale  map[string]bool // subdirectories whose links in the directory are out of date
	dirty  bool            // changed since last written: it or a subdirectory
	fresh  bool            // made here, and not linked in its parent's directory yet
	elem   *list.Element   // in tree.lru
}

type kind uint8

const (
	unknownKind kind = iota // a dag-pb link: a file or a directory
	fileKind
	dirKind
)

// An entry is a name in a directory's listing. The CID of a subdirectory held and dirty
// is out of date; the kids hold what is current.
type entry struct {
	name string
	cid  cid.Cid
	kind kind
	size int64 // a file's size; -1 until known
}

func newTree(dag ipld.DAGService, blockSize func(context.Context, cid.Cid) (int, error), root ipld.Node) (*tree, error) {
	p := newPendingDAG(dag)
	t := &tree{dag: p, pending: p, blockSize: blockSize, maxEntries: defaultMaxEntries}
	ents, err := t.listing(context.Background(), root)
	if err != nil {
		return nil, fmt.Errorf("mfs root %s: %w", root.Cid(), err)
	}
	t.root = &dir{cid: root.Cid(), ents: ents}
	t.entries = len(ents) + dirCost
	return t, nil
}

// listing reads the entries of the directory nd.
func (t *tree) listing(ctx context.Context, nd ipld.Node) ([]entry, error) {
	ud, err := uio.NewDirectoryFromNode(t.dag, nd)
	if err != nil {
		if errors.Is(err, uio.ErrNotADir) {
			return nil, ipfs.ErrNotDir
		}
		return nil, err
	}
	t.counts.loaded++
	ents := []entry{}
	err = ud.ForEachLink(ctx, func(l *ipld.Link) error {
		e := entry{name: l.Name, cid: l.Cid, size: -1}
		if l.Cid.Prefix().Codec == cid.Raw {
			e.kind = fileKind
		}
		ents = append(ents, e)
		return nil
	})
	if err != nil {
		return nil, contentError(err)
	}
	slices.SortFunc(ents, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	return ents, nil
}

// find returns the index of name in d's listing, or where it would go.
func (d *dir) find(name string) (int, bool) {
	return slices.BinarySearchFunc(d.ents, name, func(e entry, name string) int { return strings.Compare(e.name, name) })
}

// split cuts an absolute path into its elements.
func split(p string) []string {
	p = strings.Trim(gopath.Clean("/"+p), "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// dirAt returns the directory at p, creating what is missing if create is set. A file on
// the way is no directory there: not found; a file at p is not a directory.
func (t *tree) dirAt(ctx context.Context, p string, create bool) (*dir, error) {
	d := t.root
	names := split(p)
	for i, name := range names {
		k, err := t.subdir(ctx, d, name, create)
		if errors.Is(err, ipfs.ErrNotDir) && i < len(names)-1 {
			err = ipfs.ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		d = k
	}
	return d, nil
}

// subdir returns d's subdirectory name, loading it if need be, or creating it if create
// is set and there is nothing by that name.
func (t *tree) subdir(ctx context.Context, d *dir, name string, create bool) (*dir, error) {
	if k := d.kids[name]; k != nil {
		t.used(k)
		return k, nil
	}
	i, ok := d.find(name)
	if !ok {
		if !create {
			return nil, ipfs.ErrNotFound
		}
		return t.mkdir(d, i, name)
	}
	ents, err := t.read(ctx, d, i)
	if err != nil {
		return nil, err
	}
	return t.hold(d, i, ents), nil
}

// read reads the listing of the directory that is entry i of d, which d does not hold,
// and remembers the entry's kind.
func (t *tree) read(ctx context.Context, d *dir, i int) ([]entry, error) {
	e := &d.ents[i]
	if e.kind == fileKind {
		return nil, ipfs.ErrNotDir
	}
	nd := t.lastDir
	if nd == nil || !nd.Cid().Equals(e.cid) {
		var err error
		if nd, err = t.dag.Get(ctx, e.cid); err != nil {
			return nil, contentError(err)
		}
		t.lastDir = nd
	}
	ents, err := t.listing(ctx, nd)
	if errors.Is(err, ipfs.ErrNotDir) {
		e.kind = fileKind
	}
	if err != nil {
		return nil, err
	}
	e.kind = dirKind
	return ents, nil
}

// hold holds the directory that is entry i of d, with the listing ents, clean.
func (t *tree) hold(d *dir, i int, ents []entry) *dir {
	k := &dir{parent: d, name: d.ents[i].name, cid: d.ents[i].cid, ents: ents}
	t.adopt(d, k)
	k.elem = t.lru.PushFront(k)
	return k
}

// adopt makes k a subdirectory of d held by the tree.
func (t *tree) adopt(d, k *dir) {
	if d.kids == nil {
		d.kids = map[string]*dir{}
	}
	d.kids[k.name] = k
	t.entries += len(k.ents) + dirCost
}

// mkdir creates the empty directory name in d, at index i of its listing.
func (t *tree) mkdir(d *dir, i int, name string) (*dir, error) {
	ud, err := uio.NewDirectory(t.dag, uio.WithCidBuilder(ipfs.DagPBPrefix),
		uio.WithMaxHAMTFanout(ipfs.Import.HAMTFanout), uio.WithSizeEstimationMode(uio.SizeEstimationBlock))
	if err != nil {
		return nil, err
	}
	ud.SetHAMTShardingSize(int(ipfs.Import.HAMTThreshold))
	d.ents = slices.Insert(d.ents, i, entry{name: name, kind: dirKind, size: -1})
	t.entries++
	k := &dir{parent: d, name: name, ents: []entry{}, ud: ud, fresh: true}
	t.adopt(d, k)
	t.changed(k)
	return k, nil
}

// used marks d as the most recently used.
func (t *tree) used(d *dir) {
	if d.elem != nil {
		t.lru.MoveToFront(d.elem)
	}
}

// changed marks d and the directories above it as changed since they were written.
func (t *tree) changed(d *dir) {
	for ; d != nil; d = d.parent {
		if d.elem != nil {
			t.lru.Remove(d.elem)
			d.elem = nil
		}
		if d.dirty {
			return // and so is everything above it
		}
		d.dirty = true
		if p := d.parent; p != nil {
			if p.stale == nil {
				p.stale = map[string]bool{}
			}
			p.stale[d.name] = true
		}
	}
}

// mutable returns the UnixFS directory of d to change, reading it if need be.
func (t *tree) mutable(ctx context.Context, d *dir) (uio.Directory, error) {
	if d.ud != nil {
		return d.ud, nil
	}
	nd, err := t.dag.Get(ctx, d.cid)
	if err != nil {
		return nil, contentError(err)
	}
	ud, err := uio.NewDirectoryFromNode(t.dag, nd)
	if err != nil {
		return nil, err
	}
	// Not stored in the directory: what the node's import profile says.
	ud.SetMaxHAMTFanout(ipfs.Import.HAMTFanout)
	ud.SetHAMTShardingSize(int(ipfs.Import.HAMTThreshold))
	ud.SetSizeEstimationMode(uio.SizeEstimationBlock)
	d.ud = ud
	return ud, nil
}

// drop forgets the subdirectory name of d, if held: it is being replaced or removed.
func (t *tree) drop(d *dir, name string) {
	if k := d.kids[name]; k != nil {
		delete(d.kids, name)
		t.forget(k)
	}
	delete(d.stale, name)
}

// forget takes d and what is below it out of the tree's accounts.
func (t *tree) forget(d *dir) {
	if d.elem != nil {
		t.lru.Remove(d.elem)
		d.elem = nil
	}
	t.entries -= len(d.ents) + dirCost
	for _, k := range d.kids {
		t.forget(k)
	}
}

// trim drops the least recently used clean directories until the listings fit.
func (t *tree) trim() { t.trimTo(t.maxEntries) }

// trimTo drops the least recently used clean directories until the tree holds at most
// limit entries, or holds none but directories changed since written and the root.
func (t *tree) trimTo(limit int) {
	for t.entries > limit {
		back := t.lru.Back()
		if back == nil {
			return
		}
		d := back.Value.(*dir)
		delete(d.parent.kids, d.name)
		t.forget(d)
	}
}

// link places nd at p, replacing what was there.
func (t *tree) link(ctx context.Context, p string, nd ipld.Node) error {
	parent, name := gopath.Split(gopath.Clean("/" + p))
	if name == "" {
		return errors.New("cannot replace the MFS root")
	}
	d, err := t.dirAt(ctx, parent, true)
	if err != nil {
		return err
	}
	i, ok := d.find(name)
	if ok && !d.stale[name] && d.ents[i].cid.Equals(nd.Cid()) {
		return nil // the same content: nothing changes
	}
	ud, err := t.mutable(ctx, d)
	if err != nil {
		return err
	}
	t.drop(d, name)
	if err := addChild(ctx, ud, name, nd); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	e := entry{name: name, cid: nd.Cid(), size: -1}
	if ne, err := nodeEntry(nil, nd); err == nil {
		e.kind, e.size = fileKind, ne.Size
		if ne.IsDir {
			e.kind, e.size = dirKind, -1
		}
	}
	if ok {
		d.ents[i] = e
	} else {
		d.ents = slices.Insert(d.ents, i, e)
		t.entries++
	}
	t.changed(d)
	return nil
}

// addChild puts nd at name in ud, replacing what was there.
//
// In a HAMT-sharded directory, it adds through the shard itself, not through the
// DynamicDirectory that wraps it: boxo v0.40 counts replacing an entry (even with the same
// CID) as the directory shrinking, since it weighs the old link under its shard-prefixed
// name and the new one under no name at all; so it checks whether the directory should
// become a basic one again, which enumerates the shards, from disk, until it has seen the
// sharding threshold's worth of links: for each replacement. Adding an entry never makes
// a directory smaller, and replacing one with a link of another CID of the same kind leaves
// it the size it was, so there is nothing to check (TestHAMTReplaceReadsNoShards).
func addChild(ctx context.Context, ud uio.Directory, name string, nd ipld.Node) error {
	if dd, ok := ud.(*uio.DynamicDirectory); ok {
		if h, ok := dd.Directory.(*uio.HAMTDirectory); ok {
			return h.AddChild(ctx, name, nd)
		}
	}
	return ud.AddChild(ctx, name, nd)
}

// remove removes the entry at p and what is below it.
func (t *tree) remove(ctx context.Context, p string) error {
	parent, name := gopath.Split(strings.TrimRight(gopath.Clean("/"+p), "/"))
	if name == "" {
		return errors.New("cannot remove the MFS root")
	}
	d, err := t.dirAt(ctx, parent, false)
	if err != nil {
		return err
	}
	i, ok := d.find(name)
	if !ok {
		return fmt.Errorf("%s: %w", p, ipfs.ErrNotFound)
	}
	ud, err := t.mutable(ctx, d)
	if err != nil {
		return err
	}
	// A directory made here is not in ud until d is written.
	k := d.kids[name]
	linked := k == nil || !k.fresh
	t.drop(d, name)
	if linked {
		if err := ud.RemoveChild(ctx, name); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	d.ents = slices.Delete(d.ents, i, i+1)
	t.entries--
	t.changed(d)
	return nil
}

// write writes d and what changed below it, and returns d's CID. What is above d still
// links d's last version until it is written too.
func (t *tree) write(ctx context.Context, d *dir) (cid.Cid, error) {
	if !d.dirty {
		return d.cid, nil
	}
	if len(d.stale) > 0 {
		ud, err := t.mutable(ctx, d)
		if err != nil {
			return cid.Undef, err
		}
		for name := range d.stale {
			k := d.kids[name] // held: a stale directory is not in the lru
			c, err := t.write(ctx, k)
			if err != nil {
				return cid.Undef, err
			}
			nd := k.node
			if nd == nil {
				if nd, err = t.dag.Get(ctx, c); err != nil {
					return cid.Undef, contentError(err)
				}
			}
			k.node = nil
			if err := addChild(ctx, ud, name, nd); err != nil {
				return cid.Undef, fmt.Errorf("%s: %w", name, err)
			}
			k.fresh = false
			if i, ok := d.find(name); ok {
				d.ents[i].cid = c
			}
			delete(d.stale, name)
			k.elem = t.lru.PushFront(k)
		}
	}
	if d.ud == nil { // nothing changed after all
		d.dirty = false
		return d.cid, nil
	}
	if t.pauseAt != 0 && t.counts.written >= t.pauseAt {
		return cid.Undef, errPaused
	}
	nd, err := d.ud.GetNode()
	if err != nil {
		return cid.Undef, err
	}
	if err := t.dag.Add(ctx, nd); err != nil {
		return cid.Undef, err
	}
	t.counts.written++
	d.cid, d.node, d.ud, d.dirty = nd.Cid(), nd, nil, false
	return d.cid, nil
}

// A found is what a path leads to: a directory held, or an entry of one.
type found struct {
	dir *dir  // the directory, if it is one held
	in  *dir  // the directory holding the entry, nil for the root
	i   int   // the entry's index in in
	e   entry // the entry; for the root, its name is empty
}

// lookup returns what is at p, loading the directories on the way.
func (t *tree) lookup(ctx context.Context, p string) (found, error) {
	names := split(p)
	if len(names) == 0 {
		return found{dir: t.root, e: entry{kind: dirKind, cid: t.root.cid, size: -1}}, nil
	}
	d, err := t.dirAt(ctx, gopath.Join(append([]string{"/"}, names[:len(names)-1]...)...), false)
	if errors.Is(err, ipfs.ErrNotDir) {
		err = fmt.Errorf("%s: %w", p, ipfs.ErrNotFound)
	}
	if err != nil {
		return found{}, err
	}
	name := names[len(names)-1]
	i, ok := d.find(name)
	if !ok {
		return found{}, fmt.Errorf("%s: %w", p, ipfs.ErrNotFound)
	}
	f := found{dir: d.kids[name], in: d, i: i, e: d.ents[i]}
	if f.dir != nil {
		t.used(f.dir)
	}
	return f, nil
}

// stat describes what is at p, writing it first if it is a directory changed since.
func (t *tree) stat(ctx context.Context, p string) (ipfs.Entry, error) {
	f, err := t.lookup(ctx, p)
	if err != nil {
		return ipfs.Entry{}, err
	}
	return t.describe(ctx, f)
}

func (t *tree) describe(ctx context.Context, f found) (ipfs.Entry, error) {
	e := ipfs.Entry{Name: f.e.name, CID: f.e.cid, IsDir: f.e.kind == dirKind, Size: f.e.size}
	if f.dir != nil {
		c, err := t.write(ctx, f.dir)
		if err != nil {
			return ipfs.Entry{}, err
		}
		e.CID, e.IsDir, e.Size = c, true, 0
		return e, nil
	}
	if f.e.kind == dirKind {
		e.Size = 0
		return e, nil
	}
	if f.e.kind == fileKind && f.e.size >= 0 {
		return e, nil
	}
	if size, ok := t.fileSizes[f.e.cid]; ok {
		e.IsDir, e.Size = false, size
	} else if f.e.cid.Prefix().Codec == cid.Raw {
		n, err := t.blockSize(ctx, f.e.cid)
		if err != nil {
			return ipfs.Entry{}, contentError(err)
		}
		e.IsDir, e.Size = false, int64(n)
		t.fileSizes.remember(f.e.cid, e.Size)
	} else {
		nd, err := t.dag.Get(ctx, f.e.cid)
		if err != nil {
			return ipfs.Entry{}, contentError(err)
		}
		ne, err := nodeEntry(nil, nd)
		if err != nil {
			return ipfs.Entry{}, err
		}
		e.IsDir, e.Size = ne.IsDir, ne.Size
		if e.IsDir {
			t.lastDir = nd
		} else {
			t.fileSizes.remember(f.e.cid, e.Size)
		}
	}
	if f.in != nil { // remember the kind and size
		k := &f.in.ents[f.i]
		k.kind, k.size = fileKind, e.Size
		if e.IsDir {
			k.kind, k.size = dirKind, -1
		}
	}
	return e, nil
}

// list describes the entries of the directory at p, sorted by name.
func (t *tree) list(ctx context.Context, p string) ([]ipfs.Entry, error) {
	d, err := t.dirAt(ctx, p, false)
	if err != nil {
		return nil, err
	}
	out := make([]ipfs.Entry, len(d.ents))
	for i := range d.ents {
		e, err := t.describe(ctx, found{dir: d.kids[d.ents[i].name], in: d, i: i, e: d.ents[i]})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", gopath.Join(p, d.ents[i].name), err)
		}
		out[i] = e
	}
	return out, nil
}

// names returns the names in the directory at p, sorted, reading nothing below it.
//
// A small directory that is not held is read and not kept: a walk of the whole registry
// (the catalog lists every repository's directory) would otherwise push out of the tree
// the directories requests use, for directories it reads once. A large one is kept, as
// it costs more to read again than to hold.
func (t *tree) names(ctx context.Context, p string) ([]string, error) {
	var ents []entry
	parent, name := gopath.Split(gopath.Clean("/" + p))
	d, err := t.dirAt(ctx, parent, false)
	switch {
	case errors.Is(err, ipfs.ErrNotDir): // a file on the way, as dirAt has it
		return nil, fmt.Errorf("%s: %w", p, ipfs.ErrNotFound)
	case err != nil:
		return nil, err
	case name == "":
		ents = d.ents
	case d.kids[name] != nil:
		t.used(d.kids[name])
		ents = d.kids[name].ents
	default:
		i, ok := d.find(name)
		if !ok {
			return nil, fmt.Errorf("%s: %w", p, ipfs.ErrNotFound)
		}
		if ents, err = t.read(ctx, d, i); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if len(ents) >= keepListed {
			t.hold(d, i, ents)
		}
	}
	out := make([]string, len(ents))
	for i, e := range ents {
		out[i] = e.name
	}
	return out, nil
}

// keepListed is the size from which a directory listed is held.
const keepListed = 32

// nodeAt returns the node at p, writing it first if it is a directory changed since.
func (t *tree) nodeAt(ctx context.Context, p string) (ipld.Node, error) {
	f, err := t.lookup(ctx, p)
	if err != nil {
		return nil, err
	}
	c := f.e.cid
	if f.dir != nil {
		if c, err = t.write(ctx, f.dir); err != nil {
			return nil, err
		}
		if f.dir.node != nil {
			return f.dir.node, nil
		}
	}
	nd, err := t.dag.Get(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, contentError(err))
	}
	return nd, nil
}

// fileAt returns the CID of the file at p, or ipfs.ErrIsDir for a directory.
func (t *tree) fileAt(ctx context.Context, p string) (cid.Cid, error) {
	f, err := t.lookup(ctx, p)
	if err != nil {
		return cid.Undef, err
	}
	if f.dir != nil || f.e.kind == dirKind {
		return cid.Undef, fmt.Errorf("%s: %w", p, ipfs.ErrIsDir)
	}
	return f.e.cid, nil
}

// rootCID writes what changed and returns the root's CID.
func (t *tree) rootCID(ctx context.Context) (cid.Cid, error) {
	return t.rootCIDPaused(ctx, 0)
}

// rootCIDPaused is rootCID writing at most limit directories (any number if limit is 0):
// it returns errPaused if more are left to write.
func (t *tree) rootCIDPaused(ctx context.Context, limit int) (cid.Cid, error) {
	if limit > 0 {
		t.pauseAt = t.counts.written + limit
		defer func() { t.pauseAt = 0 }()
	}
	c, err := t.write(ctx, t.root)
	t.root.node = nil
	return c, err
}

// exposed is called with what a lookup returns before it leaves the tree: the CID of a
// directory must name blocks in the blockstore, where the rest of Disco and the network
// read it, so the blocks a checkpoint keeps in memory are put there first.
func (t *tree) exposed(ctx context.Context, es ...ipfs.Entry) error {
	if !slices.ContainsFunc(es, func(e ipfs.Entry) bool { return e.IsDir && t.pending.mustFlush(e.CID) }) {
		return nil
	}
	return t.pending.flush(ctx)
}
