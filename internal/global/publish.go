package global

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"strings"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/layout"
)

// Publish makes the manifest top of the repository name globally addressable. It files
// the image under a repository named by the CID of a directory that holds exactly what is
// needed to pull it, tagged latest, and under a repository named by top's hex, tagged
// latest and with the CID. It returns the CID, which depends on the manifest and its
// blobs only. If it fails, it removes what it created.
func (g *Global) Publish(ctx context.Context, name string, top digest.Digest) (c cid.Cid, err error) {
	// Publishers of one manifest, which file it under the same names, go one at a time:
	// one that fails and rolls back never removes what another has reported published.
	unlock, err := g.publishing.lock(ctx, top.String())
	if err != nil {
		return cid.Undef, err
	}
	defer unlock()
	start := time.Now()
	img, err := walkImage(ctx, top, func(ctx context.Context, d digest.Digest) ([]byte, error) {
		s, err := g.stored(ctx, name, d, layout.RevisionLink)
		if err != nil {
			return nil, err
		}
		return g.readBlob(ctx, s)
	})
	if err != nil {
		return cid.Undef, err
	}
	repo, err := g.repoFiles(ctx, name, img)
	if err != nil {
		return cid.Undef, err
	}
	c, err = g.cidOf(ctx, top, repo)
	if err != nil {
		return cid.Undef, err
	}
	digestRepo := maps.Clone(repo)
	digestRepo[layout.TagLink(c.String())] = []byte(top.String())
	digestRepo[layout.TagIndexLink(c.String(), top)] = []byte(top.String())

	var created []string
	defer func() {
		if err != nil {
			for _, name := range created {
				g.store.Delete(context.WithoutCancel(ctx), layout.Repository(name))
			}
		}
	}()
	for _, r := range []struct {
		name  string
		files map[string][]byte
	}{{c.String(), repo}, {top.Encoded(), digestRepo}} {
		made, err := g.file(ctx, r.name, r.files)
		if made {
			created = append(created, r.name)
		}
		if err != nil {
			return cid.Undef, fmt.Errorf("file %s under %s: %w", top, r.name, err)
		}
	}
	g.log.Info("published", "manifest", top, "cid", c, "blobs", len(img.blobs)+len(img.manifests),
		"took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// cidOf returns the CID of the repository of files: of its directory in IPFS, or with no
// IPFS node (storage.ipfs.cacheonly) one made from the manifest digest top as the original
// Disco made it: a CID v1 of the dag-pb codec over top's bytes as a sha2-256 multihash.
func (g *Global) cidOf(ctx context.Context, top digest.Digest, files map[string][]byte) (cid.Cid, error) {
	if g.node != nil {
		return g.node.Add(ctx, tree(files))
	}
	return CacheOnlyCID(top)
}

// CacheOnlyCID is the CID a registry with no IPFS node names the manifest d by.
func CacheOnlyCID(d digest.Digest) (cid.Cid, error) {
	b, err := hex.DecodeString(d.Encoded())
	if err != nil || d.Algorithm() != digest.SHA256 {
		return cid.Undef, fmt.Errorf("%s: not a sha256 digest", d)
	}
	m, err := mh.Encode(b, mh.SHA2_256)
	if err != nil {
		return cid.Undef, err
	}
	return cid.NewCidV1(cid.DagProtobuf, m), nil
}

// file files the repository of files under name, unless it is there already, and reports
// whether it did: a directory added to IPFS and linked, or with no IPFS node the files
// written one by one.
func (g *Global) file(ctx context.Context, name string, files map[string][]byte) (created bool, err error) {
	if g.node != nil {
		c, err := g.node.Add(ctx, tree(files))
		if err != nil {
			return false, err
		}
		return g.place(ctx, name, c)
	}
	if have, err := g.exists(ctx, layout.Repository(name)); err != nil || have {
		return false, err
	}
	for p, b := range files {
		if err := g.store.PutContent(ctx, path.Join(layout.Repository(name), p), b); err != nil {
			return true, err
		}
	}
	return true, nil
}

// stored returns the digest the content that the repository name links as d is stored
// under: Distribution stores everything under its sha256 digest and links a digest of
// another algorithm to that. link is layout.LayerLink or layout.RevisionLink. Content the
// repository does not link is not found, even if the registry holds it: a manifest may
// name a blob it does not have (a layer with urls, which Distribution does not look
// for), and publishing must not file another repository's blob under its CID.
func (g *Global) stored(ctx context.Context, name string, d digest.Digest, link func(digest.Digest) string) (digest.Digest, error) {
	b, err := driver.ReadFile(ctx, g.store, path.Join(layout.Repository(name), link(d)), maxLinkSize)
	if err != nil {
		return "", err
	}
	s, err := digest.Parse(strings.TrimSpace(string(b)))
	if err == nil && s != d && s.Algorithm() != digest.Canonical {
		err = fmt.Errorf("%s links %s", d, s)
	}
	return s, err
}

// repoFiles returns the files of a repository holding img, tagged latest, with its
// disco.json, by path in the repository. Content the image names by a digest other than
// sha256 is linked, and listed in disco.json, under both digests, as Distribution links it.
func (g *Global) repoFiles(ctx context.Context, name string, img *image) (map[string][]byte, error) {
	var dj discoJSON
	repo := map[string][]byte{}
	add := func(d digest.Digest, link func(digest.Digest) string, optional bool) error {
		s, err := g.stored(ctx, name, d, link)
		if err == nil {
			var c cid.Cid
			if g.node == nil {
				_, err = g.store.Stat(ctx, layout.Blob(s))
			} else {
				c, err = g.store.CID(ctx, layout.Blob(s))
			}
			if err == nil {
				for _, alias := range []digest.Digest{d, s} {
					dj.add(alias, c)
					repo[link(alias)] = []byte(s.String())
				}
			}
		}
		if driver.IsNotFound(err) && optional {
			return nil
		}
		if err != nil {
			return fmt.Errorf("blob %s: %w", d, err)
		}
		return nil
	}
	for _, m := range img.manifests {
		if err := add(m, layout.RevisionLink, false); err != nil {
			return nil, err
		}
	}
	for _, b := range img.blobs {
		if err := add(b.Digest, layout.LayerLink, foreign(b)); err != nil {
			return nil, err
		}
	}
	top := img.manifests[0]
	repo[layout.TagLink("latest")] = []byte(top.String())
	repo[layout.TagIndexLink("latest", top)] = []byte(top.String())
	if g.node == nil {
		return repo, nil // no CIDs to list
	}
	b, err := json.Marshal(dj)
	if err != nil {
		return nil, err
	}
	repo[discoJSONName] = b
	return repo, nil
}

// tree makes a directory of files given by slash-separated path.
func tree(byPath map[string][]byte) files.Directory {
	root := dirMap{}
	for p, content := range byPath {
		dir := root
		parts := strings.Split(path.Clean(p), "/")
		for _, part := range parts[:len(parts)-1] {
			sub, ok := dir[part].(dirMap)
			if !ok {
				sub = dirMap{}
				dir[part] = sub
			}
			dir = sub
		}
		dir[parts[len(parts)-1]] = content
	}
	return root.node()
}

// dirMap holds a directory's entries by name: a []byte for a file, a dirMap for a directory.
type dirMap map[string]any

func (d dirMap) node() files.Directory {
	entries := make(map[string]files.Node, len(d))
	for name, v := range d {
		switch v := v.(type) {
		case dirMap:
			entries[name] = v.node()
		case []byte:
			entries[name] = files.NewBytesFile(v)
		}
	}
	return files.NewMapDirectory(entries)
}
