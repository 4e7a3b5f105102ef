package ui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/reference"
	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/index"
)

// pageSize is how many repositories, or tags, a page lists.
const pageSize = 100

type listPage struct {
	frame
	Repos  []index.Repository
	Global bool
	Next   string // the next page's URL, if there is one
	Toggle string // the URL of this list with or without the global names
}

// serveList lists the repositories whose names contain match, a page at a time.
func (u *UI) serveList(w http.ResponseWriter, r *http.Request, match string) {
	q := r.URL.Query()
	all := q.Get("global") == "1"
	repos, more := u.opts.Index.Repositories(index.Query{After: q.Get("after"), Limit: pageSize, Match: match, Global: all})
	page := "list"
	if match != "" {
		page = "search"
	}
	p := listPage{frame: u.frame(r, page, "Repositories"), Repos: repos, Global: all}
	link := func(after string, all bool) string {
		v := url.Values{}
		if match != "" {
			v.Set("q", match)
		}
		if after != "" {
			v.Set("after", after)
		}
		if all {
			v.Set("global", "1")
		}
		path := u.url("")
		if match != "" {
			path = u.url("search")
		}
		if len(v) == 0 {
			return path
		}
		return path + "?" + v.Encode()
	}
	if more {
		p.Next = link(repos[len(repos)-1].Name, all)
	}
	p.Toggle = link("", !all)
	u.render(w, r, http.StatusOK, "list", p)
}

// digestQuery matches what a search takes for a digest: with its algorithm, or a bare
// sha256 or sha512 hex.
var digestQuery = regexp.MustCompile(`^(sha256:|sha512:)?([0-9a-f]{64}|[0-9a-f]{128})$`)

type usesPage struct {
	frame
	Digest digest.Digest
	What   string // what the digest is: "manifest", "config", "layer"
	Uses   []use
	More   bool
}

// use is an image that uses the searched digest, with the page to show for it.
type use struct {
	index.Use
	Page string // the image page: the tagged manifest, or the platform's that lists it
}

type cidPage struct {
	frame
	CID    string
	Held   bool
	Latest digest.Digest
	Uses   []use
}

// serveSearch answers the search box: a digest finds the images that use it, a CID the
// image it names, anything else the repositories whose names contain it.
func (u *UI) serveSearch(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	switch {
	case q == "":
		http.Redirect(w, r, u.base, http.StatusFound)
	case digestQuery.MatchString(strings.ToLower(q)):
		d := digest.Digest(strings.ToLower(q))
		if !strings.Contains(q, ":") {
			d = digest.NewDigestFromEncoded(digest.SHA256, strings.ToLower(q))
			if len(q) == 128 {
				d = digest.NewDigestFromEncoded(digest.SHA512, strings.ToLower(q))
			}
		}
		u.serveUses(w, r, d)
	case isCID(q):
		u.serveCID(w, r, q)
	default:
		u.serveList(w, r, q)
	}
}

func (u *UI) serveUses(w http.ResponseWriter, r *http.Request, d digest.Digest) {
	uses, more := u.opts.Index.Uses(d)
	p := usesPage{frame: u.frame(r, "uses", "Images using "+shortDigest(d)), Digest: d, More: more, What: "layer"}
	if _, ok := u.opts.Index.Manifest(d); ok {
		p.What = "manifest"
	}
	for _, x := range shown(uses) {
		page := x.Manifest
		if len(x.Via) > 0 {
			page = x.Via[0]
		}
		if m, ok := u.opts.Index.Manifest(page); ok && len(m.Blobs) > 0 && m.Blobs[0].Digest == d {
			p.What = "config"
		}
		p.Uses = append(p.Uses, use{Use: x, Page: x.Repository + "@" + page.String()})
	}
	u.render(w, r, http.StatusOK, "uses", p)
}

// shown orders uses with pushed names first, then CIDs, then digests, and leaves out
// the tags of digest repositories other than latest: the CID tag names the same image
// again.
func shown(uses []index.Use) []index.Use {
	uses = slices.DeleteFunc(uses, func(x index.Use) bool {
		return global.IsDigestName(x.Repository) && x.Tag != "latest"
	})
	rank := func(name string) int {
		switch {
		case global.IsDigestName(name):
			return 2
		case global.IsGlobalName(name):
			return 1
		}
		return 0
	}
	slices.SortStableFunc(uses, func(a, b index.Use) int { return rank(a.Repository) - rank(b.Repository) })
	return uses
}

// isCID reports whether s is a CID: one that names a repository (v1, base32), or any
// other form of a CID, such as v0, which serveCID turns into that one.
func isCID(s string) bool {
	if len(s) < 46 { // the shortest: a CID v0 of sha256
		return false
	}
	_, err := cid.Decode(s)
	return err == nil
}

func (u *UI) serveCID(w http.ResponseWriter, r *http.Request, s string) {
	c, _ := cid.Decode(s)
	name := cid.NewCidV1(c.Type(), c.Hash()).String()
	if name != s {
		http.Redirect(w, r, u.url("search")+"?q="+url.QueryEscape(name), http.StatusFound)
		return
	}
	p := cidPage{frame: u.frame(r, "cid", "CID "+name), CID: name}
	if repo, ok := u.opts.Index.Repository(name); ok {
		p.Held = true
		for _, t := range repo.Tags {
			if t.Name == "latest" {
				p.Latest = t.Digest
			}
		}
		uses, _ := u.opts.Index.Uses(p.Latest)
		for _, x := range uses {
			if x.Manifest == p.Latest {
				p.Uses = append(p.Uses, use{Use: x, Page: x.Repository + ":" + x.Tag})
			}
		}
	}
	u.render(w, r, http.StatusOK, "cid", p)
}

// serveRef serves the page of a repository ("name"), or of an image ("name:tag",
// "name@digest").
func (u *UI) serveRef(w http.ResponseWriter, r *http.Request, ref string) {
	name, tag, d, err := parseRef(ref)
	if err != nil {
		u.fail(w, r, http.StatusNotFound, err)
		return
	}
	if !u.authorize(w, r, pullAccess(name.Name())) {
		return
	}
	if tag == "" && d == "" {
		u.serveRepo(w, r, name)
		return
	}
	u.serveImage(w, r, name, tag, d)
}

var tagPattern = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)

// parseRef parses "name", "name:tag" or "name@digest". The name is taken as it is:
// repository names here have no domain, and may be a digest's hex.
func parseRef(s string) (name reference.Named, tag string, d digest.Digest, err error) {
	n := s
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		n = s[:i]
		if d, err = digest.Parse(s[i+1:]); err != nil {
			return nil, "", "", fmt.Errorf("%q: %w", s, err)
		}
	} else if i := strings.LastIndexByte(s, ':'); i > strings.LastIndexByte(s, '/') {
		n, tag = s[:i], s[i+1:]
		if !tagPattern.MatchString(tag) {
			return nil, "", "", fmt.Errorf("%q is not a tag", tag)
		}
	}
	name, err = reference.WithName(n)
	if err != nil {
		return nil, "", "", fmt.Errorf("%q is not a repository name: %w", n, err)
	}
	return name, tag, d, nil
}

type repoPage struct {
	frame
	Name    string
	Kind    string // "", "digest" or "cid"
	Tags    []tagRow
	Next    string
	Pushed  string
	Indexed bool
}

type tagRow struct {
	index.Tag
	Manifest index.Manifest
	Known    bool
}

// serveRepo lists the tags of a repository, from the index if it has the repository,
// else from the registry.
func (u *UI) serveRepo(w http.ResponseWriter, r *http.Request, name reference.Named) {
	ctx := r.Context()
	repo, indexed := u.opts.Index.Repository(name.Name())
	if !indexed {
		tags, err := u.readTags(ctx, name)
		if err != nil {
			u.failRead(w, r, name.Name(), err)
			return
		}
		repo = index.Repository{Name: name.Name(), Tags: tags}
		u.opts.Index.Refresh(name.Name())
	}
	p := repoPage{frame: u.frame(r, "repo", name.Name()), Name: name.Name(), Pushed: when(repo.Pushed), Indexed: indexed}
	if _, ok := global.ParseCIDName(p.Name); ok {
		p.Kind = "cid"
	} else if global.IsDigestName(p.Name) {
		p.Kind = "digest"
	}
	after := r.URL.Query().Get("after")
	for _, t := range repo.Tags {
		if after != "" && t.Name <= after {
			continue
		}
		if len(p.Tags) == pageSize {
			p.Next = u.url(p.Name) + "?after=" + url.QueryEscape(p.Tags[len(p.Tags)-1].Name)
			break
		}
		m, ok := u.opts.Index.Manifest(t.Digest)
		p.Tags = append(p.Tags, tagRow{Tag: t, Manifest: m, Known: ok})
	}
	u.render(w, r, http.StatusOK, "repo", p)
}

// readTags reads the tags of a repository from the registry.
func (u *UI) readTags(ctx context.Context, name reference.Named) ([]index.Tag, error) {
	repo, err := u.opts.Namespace.Repository(ctx, name)
	if err != nil {
		return nil, err
	}
	ts := repo.Tags(ctx)
	all, err := ts.All(ctx)
	if err != nil {
		return nil, err
	}
	var tags []index.Tag
	for _, t := range all {
		desc, err := ts.Get(ctx, t)
		if err != nil {
			continue // untagged meanwhile
		}
		tags = append(tags, index.Tag{Name: t, Digest: desc.Digest})
	}
	return tags, nil
}

// failRead answers a page whose reads from the registry failed: a 404 for what is not
// there, which the index is asked to notice, a 500 otherwise.
func (u *UI) failRead(w http.ResponseWriter, r *http.Request, name string, err error) {
	var ec errcode.Error
	switch {
	case errors.As(err, new(distribution.ErrRepositoryUnknown)),
		errors.As(err, new(distribution.ErrTagUnknown)),
		errors.As(err, new(distribution.ErrManifestUnknownRevision)),
		errors.As(err, new(distribution.ErrManifestUnknown)):
		u.opts.Index.Refresh(name)
		u.fail(w, r, http.StatusNotFound, err)
	case errors.As(err, &ec) && ec.Code == errcode.ErrorCodeNameUnknown:
		u.opts.Index.Refresh(name)
		u.fail(w, r, http.StatusNotFound, errors.New(ec.Message+": "+fmt.Sprint(ec.Detail)))
	case errors.Is(err, context.DeadlineExceeded):
		u.fail(w, r, http.StatusGatewayTimeout, err)
	default:
		u.fail(w, r, http.StatusInternalServerError, err)
	}
}
