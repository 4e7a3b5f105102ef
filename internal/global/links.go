package global

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/layout"
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
	maxLinkFiles = 20000
	maxLinkSize  = 256
)

// readLinks reads and checks the link files of the repository directory at root.
func readLinks(ctx context.Context, node ipfs.Node, root string) (*repoLinks, error) {
	l := &repoLinks{
		revisions: map[digest.Digest]bool{},
		layers:    map[digest.Digest]bool{},
		tags:      map[string]digest.Digest{},
		aliases:   map[digest.Digest]digest.Digest{},
	}
	seen := 0
	var walk func(rel string) error
	walk = func(rel string) error {
		es, err := node.List(ctx, path.Join(root, rel))
		if err != nil {
			return err
		}
		for _, e := range es {
			if seen++; seen > maxLinkFiles {
				return errors.New("too many files")
			}
			p := path.Join(rel, e.Name)
			switch {
			case e.IsDir:
				err = walk(p)
			case e.Name != "link" || e.Size > maxLinkSize:
				err = fmt.Errorf("unexpected file %s", p)
			default:
				err = l.read(ctx, node, root, p)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	for _, dir := range layout.Links {
		if err := walk(dir); err != nil && !errors.Is(err, ipfs.ErrNotFound) {
			return nil, err
		}
	}
	return l, nil
}

// read reads the link file at rel and records what it links.
func (l *repoLinks) read(ctx context.Context, node ipfs.Node, root, rel string) error {
	b, err := ipfs.ReadFile(ctx, node, path.Join(root, rel), maxLinkSize)
	if err != nil {
		return err
	}
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
	case len(parts) == 3 && parts[0] == "_layers":
		return linked(l.layers, parts[1], parts[2])
	case len(parts) == 4 && parts[0] == "_manifests" && parts[1] == "revisions":
		return linked(l.revisions, parts[2], parts[3])
	case len(parts) == 4 && parts[0] == "_manifests" && parts[1] == "tags" && parts[3] == "current":
		l.tags[parts[2]] = d
		return nil
	case len(parts) == 6 && parts[0] == "_manifests" && parts[1] == "tags" && parts[3] == "index":
		if d != digest.NewDigestFromEncoded(digest.Algorithm(parts[4]), parts[5]) {
			return fmt.Errorf("%s holds %s", rel, d)
		}
		return nil
	}
	return fmt.Errorf("unexpected link %s", rel)
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
