package server

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/distribution/distribution/v3/registry/auth"
	// The access controllers the auth section can name.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/silly"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/gorilla/mux"
)

// edgeAuth is the name under which Distribution gets the access controller of the auth
// section, wrapped in an onceController.
const edgeAuth = "disco-edge"

func init() {
	err := auth.Register(edgeAuth, func(options map[string]any) (auth.AccessController, error) {
		c, ok := options["controller"].(auth.AccessController)
		if !ok {
			return nil, fmt.Errorf("%s: no access controller in its options", edgeAuth)
		}
		return c, nil
	})
	if err != nil {
		panic(err)
	}
}

// edgeController builds the access controller of reg's auth section, if it has one, and
// has Distribution use it through the returned onceController.
func edgeController(reg *configuration.Configuration) (*onceController, error) {
	t := reg.Auth.Type()
	if t == "" || strings.EqualFold(t, "none") {
		return nil, nil
	}
	ac, err := auth.GetAccessController(t, reg.Auth.Parameters())
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	once := &onceController{AccessController: ac}
	reg.Auth = configuration.Auth{edgeAuth: configuration.Parameters{"controller": once}}
	return once, nil
}

// onceController returns the verdict authenticate has already reached for a request, so
// that a request is checked once: an htpasswd check costs a bcrypt comparison.
type onceController struct {
	auth.AccessController
}

type verdictKey struct{}

type verdict struct {
	access []auth.Access
	grant  *auth.Grant
}

func (c *onceController) Authorized(r *http.Request, access ...auth.Access) (*auth.Grant, error) {
	if v, ok := r.Context().Value(verdictKey{}).(verdict); ok && slices.Equal(v.access, access) {
		return v.grant, nil
	}
	return c.AccessController.Authorized(r, access...)
}

// referrersName finds the repository of a referrers request, which Distribution's
// router does not know.
var referrersName = regexp.MustCompile(`^/v2/(.+)/referrers/[^/]+$`)

// authenticate checks every /v2/ request against ac before anything else looks at it, as
// Distribution would for the same request: with no credentials, a request gets 401 and
// a challenge before its body is read or its name checked. prefix is http.prefix.
func authenticate(next http.Handler, ac *onceController, prefix string) http.Handler {
	if ac == nil {
		return next
	}
	router := v2.RouterWithPrefix(prefix)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, prefix)
		if !strings.HasPrefix(p, "/v2/") {
			next.ServeHTTP(w, r)
			return
		}
		access := accessFor(r, router, p)
		grant, err := ac.AccessController.Authorized(r, access...)
		if err != nil {
			if ch, ok := err.(auth.Challenge); ok {
				ch.SetHeaders(r, w)
			}
			errcode.ServeJSON(w, errcode.ErrorCodeUnauthorized.WithDetail(access))
			return
		}
		ctx := context.WithValue(r.Context(), verdictKey{}, verdict{access: access, grant: grant})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// accessFor returns the access a request needs, as Distribution's app works it out. A
// request the router does not match needs credentials, if any, and no access: it gets
// an error next.
func accessFor(r *http.Request, router *mux.Router, p string) []auth.Access {
	var m mux.RouteMatch
	name := ""
	switch {
	case router.Match(r, &m):
		name = m.Vars["name"]
		if m.Route.GetName() == v2.RouteNameCatalog {
			return []auth.Access{{Resource: auth.Resource{Type: "registry", Name: "catalog"}, Action: "*"}}
		}
	case referrersName.MatchString(p):
		name = referrersName.FindStringSubmatch(p)[1]
	}
	if name == "" {
		return nil
	}
	access := repositoryAccess(nil, r.Method, name)
	if from := r.URL.Query().Get("from"); from != "" {
		access = repositoryAccess(access, http.MethodGet, from)
	}
	return access
}

func repositoryAccess(access []auth.Access, method, name string) []auth.Access {
	res := auth.Resource{Type: "repository", Name: name}
	switch method {
	case http.MethodGet, http.MethodHead:
		return append(access, auth.Access{Resource: res, Action: "pull"})
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return append(access, auth.Access{Resource: res, Action: "pull"}, auth.Access{Resource: res, Action: "push"})
	case http.MethodDelete:
		return append(access, auth.Access{Resource: res, Action: "delete"})
	}
	return access
}
