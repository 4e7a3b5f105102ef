package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/layout"
)

// Disco keeps, in each repository, links from a subject to the manifests that name it
// (layout.Referrers). They are written when such a manifest is pushed; a link whose
// manifest has been deleted is left out of listings.

// maxManifest is Distribution's limit on a manifest's size.
const maxManifest = 4 << 20

var referrersPath = regexp.MustCompile(`^/v2/(` + reference.NameRegexp.String() + `)/referrers/([^/]+)$`)

// referrersRequest reports whether r asks for the referrers of a subject.
func (a *API) referrersRequest(r *http.Request) (name, subject string, ok bool) {
	m := referrersPath.FindStringSubmatch(strings.TrimPrefix(r.URL.Path, a.prefix))
	if m == nil {
		return "", "", false
	}
	return m[1], m[len(m)-1], true
}

// manifestFields are what a referrers listing and the OCI-Subject header need.
type manifestFields struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *v1.Descriptor    `json:"config"`
	Subject       *v1.Descriptor    `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// parseManifest parses a manifest pushed, refusing what Distribution answers with a 500,
// or takes although no client could pull it: a descriptor with an invalid digest or a
// negative size.
func parseManifest(body []byte) (manifestFields, error) {
	var m struct {
		manifestFields
		Layers    []v1.Descriptor `json:"layers"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(body, &m); err != nil || m.SchemaVersion != 2 {
		return m.manifestFields, errors.New("not a JSON manifest with schemaVersion 2")
	}
	descs := append(m.Layers, m.Manifests...)
	for _, d := range []*v1.Descriptor{m.Config, m.Subject} {
		if d != nil {
			descs = append(descs, *d)
		}
	}
	for _, d := range descs {
		if err := d.Digest.Validate(); err != nil {
			return m.manifestFields, fmt.Errorf("descriptor of %q: %w", d.Digest, err)
		}
		if d.Size < 0 {
			return m.manifestFields, fmt.Errorf("descriptor of %s: size %d", d.Digest, d.Size)
		}
	}
	return m.manifestFields, nil
}

// putManifest lets a manifest be pushed by a digest other than sha256, records it as a
// referrer of its subject and answers with OCI-Subject.
func (a *API) putManifest(w http.ResponseWriter, r *http.Request, next http.Handler, name, ref string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
	if err != nil {
		errcode.ServeJSON(w, errcode.ErrorCodeManifestInvalid.WithDetail(err.Error()))
		return
	}
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
	if len(body) > maxManifest {
		next.ServeHTTP(w, r) // Distribution refuses it
		return
	}
	canonical := digest.FromBytes(body)
	alias, isAlias := nonCanonical(ref)
	if isAlias {
		if alias.Algorithm().FromBytes(body) != alias {
			errcode.ServeJSON(w, errcode.ErrorCodeDigestInvalid.WithDetail("manifest does not match "+alias.String()))
			return
		}
		// Distribution takes manifests by sha256 only: hand it that, link the alias after.
		r.URL.Path = a.prefix + "/v2/" + name + "/manifests/" + canonical.String()
		r.URL.RawPath = ""
	}
	fields, err := parseManifest(body)
	if err != nil {
		errcode.ServeJSON(w, errcode.ErrorCodeManifestInvalid.WithDetail(err.Error()))
		return
	}
	next.ServeHTTP(&hooked{ResponseWriter: w, before: func(status int, h http.Header) error {
		if status != http.StatusCreated {
			return nil
		}
		ctx := r.Context()
		if isAlias {
			if err := a.link(ctx, name, layout.RevisionLink(alias), canonical); err != nil {
				return err
			}
			rename(h, alias)
		}
		if s := fields.Subject; s != nil && s.Digest.Validate() == nil {
			if err := a.link(ctx, name, layout.ReferrerLink(s.Digest, canonical), canonical); err != nil {
				return err
			}
			h.Set("OCI-Subject", s.Digest.String())
		}
		return nil
	}}, r)
}

// serveReferrers answers GET /v2/<name>/referrers/<subject>, with an image index of the
// manifests that name subject, filtered by ?artifactType=.
func (a *API) serveReferrers(w http.ResponseWriter, r *http.Request, name, subject string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		errcode.ServeJSON(w, errcode.ErrorCodeUnsupported)
		return
	}
	d, err := digest.Parse(subject)
	if err != nil {
		errcode.ServeJSON(w, errcode.ErrorCodeDigestInvalid.WithDetail(err.Error()))
		return
	}
	descs, err := a.referrers(r.Context(), name, d)
	if err != nil {
		a.log.Error("list referrers", "repository", name, "subject", d, "err", err)
		errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail(err.Error()))
		return
	}
	if at := r.URL.Query().Get("artifactType"); at != "" {
		descs = slices.DeleteFunc(descs, func(d v1.Descriptor) bool { return d.ArtifactType != at })
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	index := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: descs}
	index.SchemaVersion = 2
	b, err := json.Marshal(index)
	if err != nil {
		errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail(err.Error()))
		return
	}
	w.Header().Set("Content-Type", v1.MediaTypeImageIndex)
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.Method == http.MethodGet {
		w.Write(b)
	}
}

// Referrers lists the descriptors of the manifests in the repository name that have
// subject as their subject, sorted by digest, as the referrers API does.
func (a *API) Referrers(ctx context.Context, name string, subject digest.Digest) ([]v1.Descriptor, error) {
	return a.referrers(ctx, name, subject)
}

// referrers lists the descriptors of the manifests in the repository name that have
// subject as their subject, sorted by digest. A link whose manifest has been deleted since
// is left out; a GET changes nothing.
func (a *API) referrers(ctx context.Context, name string, subject digest.Digest) ([]v1.Descriptor, error) {
	repo := layout.Repository(name)
	descs := []v1.Descriptor{}
	algs, err := a.store.List(ctx, path.Join(repo, layout.Referrers(subject)))
	if driver.IsNotFound(err) {
		return descs, nil
	}
	if err != nil {
		return nil, err
	}
	for _, alg := range algs {
		entries, err := a.store.List(ctx, alg)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			d := digest.NewDigestFromEncoded(digest.Algorithm(path.Base(alg)), path.Base(e))
			desc, err := a.describe(ctx, repo, d)
			if driver.IsNotFound(err) {
				continue
			}
			if err != nil {
				return nil, err
			}
			descs = append(descs, desc)
		}
	}
	slices.SortFunc(descs, func(x, y v1.Descriptor) int { return strings.Compare(string(x.Digest), string(y.Digest)) })
	return descs, nil
}

// describe returns the descriptor of the manifest d of the repository at repo, or a
// not-found error if it is no longer there.
func (a *API) describe(ctx context.Context, repo string, d digest.Digest) (v1.Descriptor, error) {
	if err := d.Validate(); err != nil {
		return v1.Descriptor{}, err
	}
	if _, err := a.store.Stat(ctx, path.Join(repo, layout.RevisionLink(d))); err != nil {
		return v1.Descriptor{}, err
	}
	b, err := a.readSmall(ctx, layout.Blob(d))
	if err != nil {
		return v1.Descriptor{}, err
	}
	var m manifestFields
	if err := json.Unmarshal(b, &m); err != nil {
		return v1.Descriptor{}, err
	}
	if m.MediaType == "" { // optional in OCI manifests
		m.MediaType = v1.MediaTypeImageManifest
		if m.Config == nil {
			m.MediaType = v1.MediaTypeImageIndex
		}
	}
	at := m.ArtifactType
	if at == "" && m.Config != nil && m.MediaType != v1.MediaTypeImageIndex {
		at = m.Config.MediaType
	}
	return v1.Descriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(b)), ArtifactType: at, Annotations: m.Annotations}, nil
}

// readSmall reads a manifest-sized file.
func (a *API) readSmall(ctx context.Context, p string) ([]byte, error) {
	return driver.ReadFile(ctx, a.store, p, maxManifest)
}
