package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/layout"
)

// Distribution stores every blob under its sha256 digest and links a digest of another
// algorithm to it, but answers only in sha256. Clients that upload or fetch by another
// digest expect it back in Docker-Content-Digest and Location; these handlers give it.

// hooked calls before when the response's status is set, to change its headers or,
// returning an error, to answer with that error instead.
type hooked struct {
	http.ResponseWriter
	before func(status int, h http.Header) error
	sent   bool
	failed bool
}

func (h *hooked) WriteHeader(status int) {
	if h.sent {
		return
	}
	h.sent = true
	if err := h.before(status, h.Header()); err != nil {
		h.failed = true
		for k := range h.Header() {
			delete(h.Header(), k)
		}
		errcode.ServeJSON(h.ResponseWriter, errcode.ErrorCodeUnknown.WithDetail(err.Error()))
		return
	}
	h.ResponseWriter.WriteHeader(status)
}

func (h *hooked) Write(b []byte) (int, error) {
	if !h.sent {
		h.WriteHeader(http.StatusOK)
	}
	if h.failed {
		return len(b), nil
	}
	return h.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the underlying writer.
func (h *hooked) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// answerIn makes a response name its content by d rather than by its sha256 digest.
func answerIn(w http.ResponseWriter, d digest.Digest) http.ResponseWriter {
	return &hooked{ResponseWriter: w, before: func(status int, h http.Header) error {
		rename(h, d)
		return nil
	}}
}

// rename replaces the sha256 digest Distribution answered with by d in h.
func rename(h http.Header, d digest.Digest) {
	canonical := h.Get("Docker-Content-Digest")
	if canonical == "" {
		return
	}
	h.Set("Docker-Content-Digest", d.String())
	if loc := h.Get("Location"); loc != "" {
		h.Set("Location", strings.Replace(loc, canonical, d.String(), 1))
	}
	if h.Get("Etag") != "" {
		h.Set("Etag", fmt.Sprintf("%q", d))
	}
}

// upload sees blob uploads that finish under a digest other than sha256: a PUT or POST
// with ?digest=, or a cross-repository mount.
func (a *API) upload(w http.ResponseWriter, r *http.Request, next http.Handler, name string) {
	q := r.URL.Query()
	if d, ok := nonCanonical(q.Get("digest")); ok && (r.Method == http.MethodPut || r.Method == http.MethodPost) {
		next.ServeHTTP(answerIn(w, d), r)
		return
	}
	d, ok := nonCanonical(q.Get("mount"))
	if !ok || r.Method != http.MethodPost {
		next.ServeHTTP(w, r)
		return
	}
	from := q.Get("from")
	next.ServeHTTP(&hooked{ResponseWriter: w, before: func(status int, h http.Header) error {
		if status != http.StatusCreated {
			return nil
		}
		canonical, err := a.canonical(r.Context(), h, from, d)
		if err != nil {
			return err
		}
		// Distribution links a mounted blob under the digest it was asked for, pointing
		// at itself; link both digests to the stored sha256 content instead.
		if err := a.link(r.Context(), name, layout.LayerLink(d), canonical); err != nil {
			return err
		}
		if err := a.link(r.Context(), name, layout.LayerLink(canonical), canonical); err != nil {
			return err
		}
		h.Set("Docker-Content-Digest", canonical.String())
		rename(h, d)
		return nil
	}}, r)
}

// canonical finds the sha256 digest of the blob d after a mount: from the answer, or from
// the link in the repository it was mounted from.
func (a *API) canonical(ctx context.Context, h http.Header, from string, d digest.Digest) (digest.Digest, error) {
	if c, err := digest.Parse(h.Get("Docker-Content-Digest")); err == nil && c.Algorithm() == digest.Canonical {
		return c, nil
	}
	b, err := a.readSmall(ctx, layout.Repository(from)+"/"+layout.LayerLink(d))
	if err != nil {
		return "", fmt.Errorf("mount %s from %s: %w", d, from, err)
	}
	c, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil || c.Algorithm() != digest.Canonical {
		return "", fmt.Errorf("mount %s from %s: link holds %q", d, from, b)
	}
	return c, nil
}

// nonCanonical parses s as a digest of an algorithm other than sha256.
func nonCanonical(s string) (digest.Digest, bool) {
	d, err := digest.Parse(s)
	return d, err == nil && d.Algorithm() != digest.Canonical
}
