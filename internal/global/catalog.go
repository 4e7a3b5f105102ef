package global

import (
	"context"
	"io"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/layout"
)

// Repositories implements distribution.Namespace. With Options.CatalogPushedOnly, the
// catalog leaves out the digest and CID names Disco gave the images pushed here, and the
// digest names of the images cloned: it lists the names pushed, and the CID names of
// images cloned from the network, the names they were pulled by. Otherwise it lists every
// repository.
func (n namespace) Repositories(ctx context.Context, repos []string, last string) (int, error) {
	if !n.g.opts.CatalogPushedOnly {
		return n.Namespace.Repositories(ctx, repos, last)
	}
	buf := make([]string, len(repos))
	found := 0
	for found < len(repos) {
		k, err := n.Namespace.Repositories(ctx, buf[:len(repos)-found], last)
		for _, name := range buf[:k] {
			last = name
			given, gerr := n.g.given(ctx, name)
			if gerr != nil {
				return found, gerr
			}
			if !given {
				repos[found] = name
				found++
			}
		}
		if err != nil {
			return found, err // io.EOF at the end
		}
		if k == 0 {
			return found, io.EOF
		}
	}
	return found, nil
}

// given reports whether name is a digest or CID name Disco gave an image: a digest name,
// or a CID name whose image has its digest name here too, not made for a clone (a clone
// is filed under its digest too, and its CID name is the one it was cloned by).
func (g *Global) given(ctx context.Context, name string) (bool, error) {
	if IsDigestName(name) {
		return true, nil
	}
	if _, ok := ParseCIDName(name); !ok {
		return false, nil
	}
	b, err := driver.ReadFile(ctx, g.store, layout.Repository(name)+"/"+layout.TagLink("latest"), 256)
	if driver.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return false, nil // not one Disco made
	}
	repo := layout.Repository(d.Encoded())
	if pushed, err := driver.Exists(ctx, g.store, repo+"/_manifests"); err != nil || !pushed {
		return false, err
	}
	cloned, err := driver.Exists(ctx, g.store, path.Join(repo, ClonedMarker))
	return !cloned, err
}
