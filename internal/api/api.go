// Package api adds to the Distribution library's HTTP API what OCI Distribution v1.1 asks
// and Distribution v3.1.2 lacks: the referrers API, the OCI-Subject header, and digests
// other than sha256 in requests and answers. It also makes every /v2/ error an OCI error
// body (Errors).
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/layout"
)

// API serves Disco's additions to the registry API.
type API struct {
	store  driver.Store
	prefix string
	access auth.AccessController // nil without auth
	log    *slog.Logger
	router *mux.Router
}

// New returns the API for the registry kept in store, with Distribution's configuration
// reg (its auth section guards the referrers API as it guards the rest).
func New(reg *configuration.Configuration, store driver.Store, log *slog.Logger) (*API, error) {
	a := &API{
		store:  store,
		prefix: reg.HTTP.Prefix,
		log:    log,
		router: v2.RouterWithPrefix(reg.HTTP.Prefix),
	}
	if t := reg.Auth.Type(); t != "" && !strings.EqualFold(t, "none") {
		ac, err := auth.GetAccessController(t, reg.Auth.Parameters())
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		a.access = ac
	}
	return a, nil
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
			if d, err := digest.Parse(m.Vars["digest"]); err == nil && d.Algorithm() != digest.Canonical {
				next.ServeHTTP(answerIn(w, d), r)
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

// authorize checks that the request may pull from the repository name, answering it with
// a challenge if not.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, name string) bool {
	if a.access == nil {
		return true
	}
	_, err := a.access.Authorized(r, auth.Access{
		Resource: auth.Resource{Type: "repository", Name: name},
		Action:   "pull",
	})
	if err == nil {
		return true
	}
	if ch, ok := err.(auth.Challenge); ok {
		ch.SetHeaders(r, w)
		errcode.ServeJSON(w, errcode.ErrorCodeUnauthorized.WithDetail(err.Error()))
		return false
	}
	a.log.Error("authorize", "err", err)
	errcode.ServeJSON(w, errcode.ErrorCodeUnauthorized)
	return false
}
