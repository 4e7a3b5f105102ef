package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/index"
)

// Bounds on what an image page reads.
const (
	maxConfigSize = 4 << 20
	maxPlatforms  = 64
)

type imagePage struct {
	frame
	Name      string
	Tag       string
	Digest    digest.Digest
	Manifest  index.ManifestFields
	Kind      index.Kind
	Type      string // artifact type
	Size      int64
	CID       string
	Cloned    bool // a CID repository cloned by its CID, rather than pushed here
	Blobs     int  // configs and layers
	Held      int  // of those, the ones held here
	Tags      []string
	Uses      []use // other repositories and indexes that name the manifest
	Platforms []platform
	Layers    []layer
	Config    *config
	Referrers []referrer
	Pull      []command
	Problems  []string // what could not be read
}

type platform struct {
	Platform string
	Digest   digest.Digest
	Size     int64
	Page     string
}

type layer struct {
	v1.Descriptor
	Held bool
}

type config struct {
	v1.Descriptor
	Created   string
	Platform  string
	Labels    [][2]string
	History   []v1.History
	Held      bool
	Available bool
}

type referrer struct {
	v1.Descriptor
	Annotations [][2]string
}

type command struct {
	Kind string // "tag", "digest", "cid", "any"
	What string
	Text string
}

// serveImage shows the manifest the tag, or the digest d, names in the repository name.
func (u *UI) serveImage(w http.ResponseWriter, r *http.Request, name reference.Named, tag string, d digest.Digest) {
	ctx := r.Context()
	repo, err := u.opts.Namespace.Repository(ctx, name) // clones a CID repository not here yet
	if err != nil {
		u.failRead(w, r, name.Name(), err)
		return
	}
	if tag != "" {
		desc, err := repo.Tags(ctx).Get(ctx, tag)
		if err != nil {
			u.failRead(w, r, name.Name(), err)
			return
		}
		d = desc.Digest
	}
	ms, err := repo.Manifests(ctx)
	if err != nil {
		u.failRead(w, r, name.Name(), err)
		return
	}
	f, err := readManifest(ctx, ms, d)
	if err != nil {
		u.failRead(w, r, name.Name(), err)
		return
	}
	p := &imagePage{frame: u.frame(r, "image", name.Name()+"@"+shortDigest(d)), Name: name.Name(), Tag: tag, Digest: d,
		Manifest: f, Kind: f.Kind(), Type: f.Type()}
	p.CID, p.Cloned = u.cidOf(ctx, repo, d)
	if rp, ok := u.opts.Index.Repository(name.Name()); ok {
		for _, t := range rp.Tags {
			if t.Digest == d {
				p.Tags = append(p.Tags, t.Name)
			}
		}
	}
	uses, _ := u.opts.Index.Uses(d)
	for _, x := range shown(uses) {
		if x.Repository == name.Name() && x.Manifest == d {
			continue // its own tags, above
		}
		p.Uses = append(p.Uses, use{Use: x, Page: x.Repository + ":" + x.Tag})
	}

	blobs := map[digest.Digest]int64{}
	if p.Kind == index.KindIndex {
		u.readPlatforms(ctx, p, ms, blobs)
	} else {
		u.readLayers(ctx, p, repo, blobs)
	}
	for b, size := range blobs {
		p.Size += size
		if u.held(ctx, b) {
			p.Held++
		}
	}
	p.Blobs = len(blobs)
	if u.opts.Referrers != nil {
		descs, err := u.opts.Referrers(ctx, name.Name(), d)
		if err != nil {
			p.Problems = append(p.Problems, "referrers: "+err.Error())
		}
		for _, desc := range descs {
			p.Referrers = append(p.Referrers, referrer{Descriptor: desc, Annotations: sorted(desc.Annotations)})
		}
	}
	p.Pull = pullCommands(r.Host, name.Name(), tag, d, p.CID)
	u.render(w, r, http.StatusOK, "image", p)
}

func readManifest(ctx context.Context, ms distribution.ManifestService, d digest.Digest) (index.ManifestFields, error) {
	m, err := ms.Get(ctx, d)
	if err != nil {
		return index.ManifestFields{}, err
	}
	_, payload, err := m.Payload()
	if err != nil {
		return index.ManifestFields{}, err
	}
	return index.ParseManifest(payload)
}

// cidOf returns the CID the manifest d of the repository is filed under, if it is the
// top manifest of an image pushed here or cloned, and whether the repository, named by a
// CID, was cloned: its digest repository, which a push here makes, is not here.
func (u *UI) cidOf(ctx context.Context, repo distribution.Repository, d digest.Digest) (c string, cloned bool) {
	name := repo.Named().Name()
	if _, ok := global.ParseCIDName(name); ok {
		latest, err := repo.Tags(ctx).Get(ctx, "latest")
		if err != nil {
			return "", false
		}
		hex := latest.Digest.Encoded()
		cloned = len(u.tagsOf(ctx, hex)) == 0 || u.opts.Cloned != nil && u.opts.Cloned(ctx, hex)
		if latest.Digest != d {
			return "", cloned
		}
		return name, cloned
	}
	for _, t := range u.tagsOf(ctx, d.Encoded()) {
		if _, ok := global.ParseCIDName(t); ok {
			return t, false
		}
	}
	return "", false
}

// tagsOf returns the tags of the repository name, none if it is not there.
func (u *UI) tagsOf(ctx context.Context, name string) []string {
	named, err := reference.WithName(name)
	if err != nil {
		return nil
	}
	repo, err := u.opts.Namespace.Repository(ctx, named)
	if err != nil {
		return nil
	}
	tags, _ := repo.Tags(ctx).All(ctx)
	return tags
}

// readPlatforms lists the manifests of an index, and the blobs of all of them.
func (u *UI) readPlatforms(ctx context.Context, p *imagePage, ms distribution.ManifestService, blobs map[digest.Digest]int64) {
	for i, desc := range p.Manifest.Manifests {
		pl := platform{Digest: desc.Digest, Page: p.Name + "@" + desc.Digest.String(), Platform: "unknown"}
		if desc.Platform != nil {
			pl.Platform = platformString(desc.Platform.OS, desc.Platform.Architecture, desc.Platform.Variant)
		}
		if i < maxPlatforms {
			f, err := readManifest(ctx, ms, desc.Digest)
			if err != nil {
				p.Problems = append(p.Problems, fmt.Sprintf("manifest %s: %v", desc.Digest, err))
			}
			for _, b := range append(descriptors(f.Config), f.Layers...) {
				pl.Size += b.Size
				blobs[b.Digest] = b.Size
			}
		}
		p.Platforms = append(p.Platforms, pl)
	}
}

// readLayers lists the layers of an image and reads its config.
func (u *UI) readLayers(ctx context.Context, p *imagePage, repo distribution.Repository, blobs map[digest.Digest]int64) {
	for _, l := range p.Manifest.Layers {
		p.Layers = append(p.Layers, layer{Descriptor: l, Held: u.held(ctx, l.Digest)})
		blobs[l.Digest] = l.Size
	}
	c := p.Manifest.Config
	if c == nil {
		return
	}
	blobs[c.Digest] = c.Size
	p.Config = &config{Descriptor: *c, Held: u.held(ctx, c.Digest)}
	if p.Kind != index.KindImage || c.Size > maxConfigSize {
		return
	}
	// A cloned image's config may not be here yet: it is small, and fetched now.
	b, err := repo.Blobs(ctx).Get(ctx, c.Digest)
	if err != nil {
		p.Problems = append(p.Problems, fmt.Sprintf("config %s: %v", c.Digest, err))
		return
	}
	var img v1.Image
	if err := json.Unmarshal(b, &img); err != nil {
		p.Problems = append(p.Problems, fmt.Sprintf("config %s: %v", c.Digest, err))
		return
	}
	p.Config.Available, p.Config.Held = true, true
	if img.Created != nil && !img.Created.IsZero() {
		p.Config.Created = img.Created.UTC().Format(time.RFC3339)
	}
	p.Config.Platform = platformString(img.OS, img.Architecture, img.Variant)
	p.Config.Labels = sorted(img.Config.Labels)
	p.Config.History = img.History
}

// held reports whether the blob d is in this registry's storage, rather than to be
// fetched from IPFS when a client asks for it.
func (u *UI) held(ctx context.Context, d digest.Digest) bool {
	_, err := u.opts.Namespace.BlobStatter().Stat(ctx, d)
	return err == nil
}

// pullCommands are the commands that pull the image from this host, and by its CID from
// any Disco.
func pullCommands(host, name, tag string, d digest.Digest, c string) []command {
	var out []command
	if tag != "" && name != c {
		out = append(out, command{Kind: "tag", What: "by tag", Text: fmt.Sprintf("docker pull %s/%s:%s", host, name, tag)})
	}
	out = append(out, command{Kind: "digest", What: "by digest", Text: fmt.Sprintf("docker pull %s/%s@%s", host, name, d)})
	if c != "" {
		out = append(out,
			command{Kind: "cid", What: "by CID, from here", Text: fmt.Sprintf("docker pull %s/%s", host, c)},
			command{Kind: "any", What: "by CID, from any Disco", Text: fmt.Sprintf("docker pull <any-disco>:1970/%s", c)})
	}
	return out
}

func descriptors(d *v1.Descriptor) []v1.Descriptor {
	if d == nil {
		return nil
	}
	return []v1.Descriptor{*d}
}

func platformString(os, arch, variant string) string {
	if os == "" && arch == "" {
		return ""
	}
	s := os + "/" + arch
	if variant != "" {
		s += "/" + variant
	}
	return s
}

func sorted(m map[string]string) [][2]string {
	var out [][2]string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, [2]string{k, m[k]})
	}
	return out
}
