// Package router spreads a registry over several IPFS nodes. Each repository, blob and
// upload lives on one node, chosen from its identity (a repository's name, a blob's
// digest, an upload's id) by rendezvous hashing over the nodes' names: the same node at
// every start, and adding a node moves only the content the new node wins, about 1/N of
// it. The directories above them (the list of repositories, a namespace such as org/
// holding org/app and org/web) are on every node that holds something below, and are
// listed as the union of what the nodes hold.
package router

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/base"
	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/ipfs"
)

// Node is one node of a Router: a Store over it, the node itself, and the name it is
// placed by (its URL in the configuration).
type Node struct {
	Name  string
	Store driver.Store
	IPFS  ipfs.Node
}

// Router is a driver.Store over several nodes. Distribution's base checks paths and
// counts calls, as for the ipfs driver.
type Router struct {
	baseEmbed
	r *router
}

type baseEmbed struct{ base.Base }

type router struct {
	nodes []Node
}

var _ driver.Store = (*Router)(nil)

// New returns a Router over nodes, which must have distinct names.
func New(nodes []Node) (*Router, error) {
	if len(nodes) == 0 {
		return nil, errors.New("router: no nodes")
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		if seen[n.Name] {
			return nil, fmt.Errorf("router: node %s twice", n.Name)
		}
		seen[n.Name] = true
	}
	r := &router{nodes: nodes}
	return &Router{baseEmbed: baseEmbed{base.Base{StorageDriver: r}}, r: r}, nil
}

// Link places c at p (see driver.Store), on the node that holds p.
func (r *Router) Link(ctx context.Context, p string, c cid.Cid) error {
	if !storagedriver.PathRegexp.MatchString(p) {
		return storagedriver.InvalidPathError{Path: p, DriverName: driver.Name}
	}
	return r.r.Link(ctx, p, c)
}

// CID returns the CID of what is at p (see driver.Store), on the node that holds it.
func (r *Router) CID(ctx context.Context, p string) (cid.Cid, error) {
	if !storagedriver.PathRegexp.MatchString(p) {
		return cid.Undef, storagedriver.InvalidPathError{Path: p, DriverName: driver.Name}
	}
	return r.r.CID(ctx, p)
}

// NodeFor returns the IPFS node that holds the driver path p, or the first node for a
// directory above what nodes hold. Content to link at p is best fetched there.
func (r *Router) NodeFor(p string) ipfs.Node { return r.r.nodeFor(p) }

const v2 = "/docker/registry/v2"

// key returns the identity of what holds the driver path p, by which it is placed: a
// blob, an upload or a repository. ok is false for a directory above them. A path outside
// Distribution's layout is placed by its first element.
func key(p string) (k string, ok bool) {
	p = path.Clean("/" + p)
	if p == "/" || strings.HasPrefix(v2, p+"/") || p == v2 {
		return "", false
	}
	if !strings.HasPrefix(p, v2+"/") {
		first, _, _ := strings.Cut(p[1:], "/")
		return "path " + first, true
	}
	if rest, found := strings.CutPrefix(p, v2+"/blobs/"); found {
		parts := strings.Split(rest, "/") // <algorithm>/<first two hex digits>/<hex>/...
		if len(parts) < 3 {
			return "", false
		}
		return "blob " + parts[0] + ":" + parts[2], true
	}
	rest, found := strings.CutPrefix(p, v2+"/repositories/")
	if !found {
		return "", false
	}
	parts := strings.Split(rest, "/")
	if global.IsGlobalName(parts[0]) {
		// A repository named by a digest or CID is all of its directory: it holds files
		// (disco.json) that are not below a "_" element, and no repository below it.
		return "repository " + parts[0], true
	}
	for i, part := range parts {
		if !strings.HasPrefix(part, "_") {
			continue
		}
		if part == "_uploads" {
			if i+1 == len(parts) {
				return "", false // the uploads of a repository are on every node
			}
			return "upload " + parts[i+1], true
		}
		return "repository " + strings.Join(parts[:i], "/"), true
	}
	return "", false
}

// RepositoryKey is the key of a whole repository directory, for Link and Delete of it.
func repositoryKey(p string) (string, bool) {
	rest, found := strings.CutPrefix(path.Clean("/"+p), v2+"/repositories/")
	if !found || rest == "" {
		return "", false
	}
	return "repository " + rest, true
}

// owner returns the index of the node that holds what k names: the one with the highest
// score for it.
func (r *router) owner(k string) int {
	best, bestScore := 0, uint64(0)
	for i, n := range r.nodes {
		sum := sha256.Sum256([]byte(n.Name + "\x00" + k))
		if s := binary.BigEndian.Uint64(sum[:8]); i == 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// nodeOf returns the node that holds p, or false for a directory above what nodes hold.
func (r *router) nodeOf(p string) (Node, bool) {
	k, ok := key(p)
	if !ok {
		return Node{}, false
	}
	return r.nodes[r.owner(k)], true
}

func (r *router) nodeFor(p string) ipfs.Node {
	if n, ok := r.nodeOf(p); ok {
		return n.IPFS
	}
	if k, ok := repositoryKey(p); ok {
		return r.nodes[r.owner(k)].IPFS
	}
	return r.nodes[0].IPFS
}

// Name is the ipfs driver's: to Distribution, a router is one.
func (r *router) Name() string { return driver.Name }

func (r *router) GetContent(ctx context.Context, p string) ([]byte, error) {
	if n, ok := r.nodeOf(p); ok {
		return n.Store.GetContent(ctx, p)
	}
	rc, err := r.Reader(ctx, p, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (r *router) PutContent(ctx context.Context, p string, b []byte) error {
	n, err := r.writable(p)
	if err != nil {
		return err
	}
	return n.Store.PutContent(ctx, p, b)
}

func (r *router) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if n, ok := r.nodeOf(p); ok {
		return n.Store.Reader(ctx, p, offset)
	}
	return nil, storagedriver.PathNotFoundError{Path: p, DriverName: r.Name()} // only files are read
}

func (r *router) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	n, err := r.writable(p)
	if err != nil {
		return nil, err
	}
	return n.Store.Writer(ctx, p, append)
}

// writable returns the node that holds p, which must not be a directory above what nodes
// hold: Distribution keeps no files there.
func (r *router) writable(p string) (Node, error) {
	n, ok := r.nodeOf(p)
	if !ok {
		return Node{}, fmt.Errorf("router: %s is not in a repository, a blob or an upload", p)
	}
	return n, nil
}

func (r *router) Stat(ctx context.Context, p string) (storagedriver.FileInfo, error) {
	if n, ok := r.nodeOf(p); ok {
		return n.Store.Stat(ctx, p)
	}
	var found storagedriver.FileInfo
	err := r.each(ctx, func(n Node) error {
		fi, err := n.Store.Stat(ctx, p)
		if err == nil && found == nil {
			found = fi
		}
		return err
	})
	if found != nil {
		return found, nil
	}
	return nil, err
}

func (r *router) List(ctx context.Context, p string) ([]string, error) {
	if n, ok := r.nodeOf(p); ok {
		return n.Store.List(ctx, p)
	}
	var all []string
	listed := false
	err := r.each(ctx, func(n Node) error {
		es, err := n.Store.List(ctx, p)
		if err == nil {
			listed = true
			all = append(all, es...)
		}
		return err
	})
	if !listed {
		return nil, err
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// each runs f on every node that is up, and returns nil if it succeeded on one at least,
// else an error of one: not found if it was not found anywhere. A node that is down is
// left out: what is on the others is still there.
func (r *router) each(ctx context.Context, f func(Node) error) error {
	var notFound, other error
	ok := false
	for _, n := range r.nodes {
		err := f(n)
		switch {
		case err == nil:
			ok = true
		case driver.IsNotFound(err):
			notFound = err
		case errors.Is(err, ipfs.ErrUnavailable):
			other = errors.Join(other, err)
		default:
			return err
		}
	}
	if ok {
		return nil
	}
	if notFound != nil && other == nil {
		return notFound
	}
	return errors.Join(other, notFound)
}

// Move moves src to dst; across nodes, dst's node fetches the content from src's, which
// it must be peered with.
func (r *router) Move(ctx context.Context, src, dst string) error {
	from, err := r.writable(src)
	if err != nil {
		return err
	}
	to, err := r.writable(dst)
	if err != nil {
		return err
	}
	if from.Name == to.Name {
		return from.Store.Move(ctx, src, dst)
	}
	c, err := from.Store.CID(ctx, src)
	if err != nil {
		return err
	}
	if err := to.IPFS.Fetch(ctx, c); err != nil {
		return fmt.Errorf("move %s to %s on %s: %w", src, dst, to.Name, err)
	}
	if err := to.Store.Link(ctx, dst, c); err != nil {
		return err
	}
	return from.Store.Delete(ctx, src)
}

// Delete deletes p: on its node, or for a directory above what nodes hold, on every node.
func (r *router) Delete(ctx context.Context, p string) error {
	if n, ok := r.nodeOf(p); ok {
		return n.Store.Delete(ctx, p)
	}
	return r.each(ctx, func(n Node) error { return n.Store.Delete(ctx, p) })
}

// Link places c at p, on the node that holds p, which fetches it whole first: a clone or
// a move must not depend afterwards on the node it came from.
func (r *router) Link(ctx context.Context, p string, c cid.Cid) error {
	n, ok := r.nodeOf(p)
	if !ok {
		k, isRepo := repositoryKey(p)
		if !isRepo {
			return fmt.Errorf("router: cannot link %s", p)
		}
		n = r.nodes[r.owner(k)]
	}
	if err := n.IPFS.Fetch(ctx, c); err != nil {
		return fmt.Errorf("link %s on %s: %w", p, n.Name, err)
	}
	return n.Store.Link(ctx, p, c)
}

// CID returns the CID of what is at p, on the node that holds it.
func (r *router) CID(ctx context.Context, p string) (cid.Cid, error) {
	if n, ok := r.nodeOf(p); ok {
		return n.Store.CID(ctx, p)
	}
	if k, ok := repositoryKey(p); ok {
		return r.nodes[r.owner(k)].Store.CID(ctx, p)
	}
	return cid.Undef, fmt.Errorf("router: %s is on several nodes", p)
}

// RedirectURL returns "": the registry serves blobs itself.
func (r *router) RedirectURL(*http.Request, string) (string, error) { return "", nil }

func (r *router) Walk(ctx context.Context, p string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	return storagedriver.WalkFallback(ctx, r, p, f, options...)
}
