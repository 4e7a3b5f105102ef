// Package api adds to the Distribution library's HTTP API what OCI Distribution v1.1 asks
// and Distribution v3.1.2 lacks: the referrers API, the OCI-Subject header, and digests
// other than sha256 in requests and answers. It also makes every /v2/ error an OCI error
// body (Errors).
package api

import (
	"context"
	"log/slog"
	"net/http"

	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/layout"
)

// API serves Disco's additions to the registry API.
type API struct {
	store  driver.Store
	prefix string
	log    *slog.Logger
	router *mux.Router
}

// New returns the API for the registry kept in store, under Distribution's http.prefix.
// Requests reach it authorized: the server checks every /v2/ request first.
func New(prefix string, store driver.Store, log *slog.Logger) *API {
	return &API{store: store, prefix: prefix, log: log, router: v2.RouterWithPrefix(prefix)}
}

// Handler serves the referrers API and sees the requests Distribution needs help with.
func (a *API) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, subject, ok := a.referrersRequest(r); ok {
			a.serveReferrers(w, r, name, subject)
			return
		}
		var m mux.RouteMatch
		if !a.router.Match(r, &m) {
			next.ServeHTTP(w, r)
			return
		}
		name := m.Vars["name"]
		switch m.Route.GetName() {
		case v2.RouteNameManifest:
			if r.Method == http.MethodPut {
				a.putManifest(w, r, next, name, m.Vars["reference"])
				return
			}
		case v2.RouteNameBlob:
			d, err := digest.Parse(m.Vars["digest"])
			if err == nil && d.Algorithm() != digest.Canonical {
				next.ServeHTTP(answerIn(w, d), r)
				return
			}
			if err == nil && r.Method == http.MethodGet {
				a.serveBlob(w, r, next, name, d)
				return
			}
		case v2.RouteNameBlobUpload, v2.RouteNameBlobUploadChunk:
			a.upload(w, r, next, name)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// link writes a link file at p in the repository name, pointing at d.
func (a *API) link(ctx context.Context, name, p string, d digest.Digest) error {
	return a.store.PutContent(ctx, layout.Repository(name)+"/"+p, []byte(d.String()))
}
