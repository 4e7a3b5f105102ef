package global

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/ipfs"
)

// repoLinks are the link files of a repository directory from the network.
type repoLinks struct {
	revisions map[digest.Digest]bool
	layers    map[digest.Digest]bool
	tags      map[string]digest.Digest
	// aliases maps digests other than sha256 to the sha256 digest they link to.
	aliases map[digest.Digest]digest.Digest
}

// Bounds on a repository directory from the network.
const (
	maxRepoEntries = 20000
	maxLinkSize    = 256
)

// repoEntry is the shape of an entry a CID repository may hold. Elements are names, or
// one of algElem, hexElem (a digest's hex for the algorithm before it) and tagElem.
type repoEntry struct {
	elems []string
	dir   bool // a directory with nothing in it, rather than a file
}

const (
	algElem = "<algorithm>"
	hexElem = "<hex>"
	tagElem = "<tag>"
)

// repoEntries are all a CID repository holds: what Disco publishes, and the empty
// _uploads directory the original Disco leaves. Anything else, or any name that is not
// one of these (".", "", "..", a name with a slash), makes the whole repository refused:
// Distribution walks repository directories, and a name that is not a path element sends
// its walks round in circles or out of the directory.
var repoEntries = []repoEntry{
	{elems: []string{discoJSONName}},
	{elems: []string{"_uploads"}, dir: true},
	{elems: []string{"_layers", algElem, hexElem, "link"}},
	{elems: []string{"_manifests", "revisions", algElem, hexElem, "link"}},
	{elems: []string{"_manifests", "tags", tagElem, "current", "link"}},
	{elems: []string{"_manifests", "tags", tagElem, "index", algElem, hexElem, "link"}},
}

var tagPattern = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)

// match reports whether the names s fit the first len(s) elements of e.
func (e repoEntry) match(s []string) bool {
	if len(s) > len(e.elems) {
		return false
	}
	for i, name := range s {
		switch e.elems[i] {
		case algElem:
			if name != string(digest.SHA256) && name != string(digest.SHA512) {
				return false
			}
		case hexElem:
			if digest.Algorithm(s[i-1]).Validate(name) != nil {
				return false
			}
		case tagElem:
			if !tagPattern.MatchString(name) {
				return false
			}
		default:
			if name != e.elems[i] {
				return false
			}
		}
	}
	return true
}

// checkEntry checks an entry of a CID repository at the names s below its root.
func checkEntry(s []string, isDir bool) error {
	for _, e := range repoEntries {
		if !e.match(s) {
			continue
		}
		if whole := len(s) == len(e.elems); isDir == (!whole || e.dir) {
			return nil
		}
	}
	kind := "file"
	if isDir {
		kind = "directory"
	}
	return fmt.Errorf("unexpected %s %q", kind, strings.Join(s, "/"))
}

// readLinks checks the whole repository directory at root, entry by entry, then reads and
// checks its link files.
func readLinks(ctx context.Context, node ipfs.Node, root string) (*repoLinks, error) {
	l := &repoLinks{
		revisions: map[digest.Digest]bool{},
		layers:    map[digest.Digest]bool{},
		tags:      map[string]digest.Digest{},
		aliases:   map[digest.Digest]digest.Digest{},
	}
	var links []string
	seen := 0
	var walk func(s []string) error
	walk = func(s []string) error {
		es, err := node.List(ctx, path.Join(append([]string{root}, s...)...))
		if err != nil {
			return err
		}
		for _, e := range es {
			if seen++; seen > maxRepoEntries {
				return errors.New("too many entries")
			}
			sub := append(s[:len(s):len(s)], e.Name)
			if err := checkEntry(sub, e.IsDir); err != nil {
				return err
			}
			switch {
			case e.IsDir:
				err = walk(sub)
			case e.Name == "link" && e.Size > maxLinkSize:
				err = fmt.Errorf("%s: larger than %d bytes", strings.Join(sub, "/"), maxLinkSize)
			case e.Name == "link":
				links = append(links, strings.Join(sub, "/"))
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(nil); err != nil {
		return nil, err
	}
	for _, rel := range links {
		if err := l.read(ctx, node, root, rel); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// read reads the link file at rel, whose path checkEntry has checked, and records what it
// links.
func (l *repoLinks) read(ctx context.Context, node ipfs.Node, root, rel string) error {
	b, err := ipfs.ReadFile(ctx, node, path.Join(root, rel), maxLinkSize)
	if err != nil {
		return err
	}
	return l.record(rel, b)
}

// record records the link file at rel, whose path checkEntry has checked, holding b.
func (l *repoLinks) record(rel string, b []byte) error {
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	parts := strings.Split(path.Dir(rel), "/")
	// linked records the link at the digest its path names, which holds d: the same
	// digest, or for another algorithm the sha256 digest the content is stored under.
	linked := func(set map[digest.Digest]bool, alg, hex string) error {
		p := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
		set[p] = true
		switch {
		case d == p:
			return nil
		case p.Algorithm() != digest.Canonical && d.Algorithm() == digest.Canonical:
			l.aliases[p] = d
			return nil
		}
		return fmt.Errorf("%s holds %s", rel, d)
	}
	switch {
	case parts[0] == "_layers":
		return linked(l.layers, parts[1], parts[2])
	case parts[1] == "revisions":
		return linked(l.revisions, parts[2], parts[3])
	case parts[3] == "current":
		l.tags[parts[2]] = d
		return nil
	default: // a tag's index
		if d != digest.NewDigestFromEncoded(digest.Algorithm(parts[4]), parts[5]) {
			return fmt.Errorf("%s holds %s", rel, d)
		}
		return nil
	}
}

// check checks the links against disco.json's map of blobs.
func (l *repoLinks) check(blobs map[digest.Digest]cid.Cid) error {
	if _, ok := l.tags["latest"]; !ok {
		return errors.New("no latest tag")
	}
	for tag, d := range l.tags {
		if !l.revisions[d] {
			return fmt.Errorf("tag %s names %s, which is not a manifest of the repository", tag, d)
		}
	}
	for _, set := range []map[digest.Digest]bool{l.revisions, l.layers} {
		for d := range set {
			if _, ok := blobs[d]; !ok {
				return fmt.Errorf("%s is linked but not in %s", d, discoJSONName)
			}
		}
	}
	for alias, d := range l.aliases {
		if blobs[alias] != blobs[d] {
			return fmt.Errorf("%s links %s, but %s lists them apart", alias, d, discoJSONName)
		}
	}
	return nil
}

// covers checks that the links hold everything img needs.
func (l *repoLinks) covers(img *image, blobs map[digest.Digest]cid.Cid) error {
	for _, m := range img.manifests {
		if !l.revisions[m] {
			return fmt.Errorf("manifest %s is not linked", m)
		}
	}
	for _, b := range img.blobs {
		if _, listed := blobs[b.Digest]; !listed && foreign(b) {
			continue
		}
		if !l.layers[b.Digest] {
			return fmt.Errorf("blob %s is not linked", b.Digest)
		}
	}
	return nil
}
