package global

import (
	"net/http"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/gorilla/mux"
)

// ReadOnly refuses, with an OCI DENIED error, every request that would change a repository
// named by a digest or a CID, or below one. Those names are Disco's, and what they name
// never changes.
// prefix is Distribution's http.prefix.
func ReadOnly(next http.Handler, prefix string) http.Handler {
	router := v2.RouterWithPrefix(prefix)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		var m mux.RouteMatch
		if router.Match(r, &m) {
			if name := m.Vars["name"]; UnderGlobalName(name) {
				errcode.ServeJSON(w, errcode.ErrorCodeDenied.WithDetail(
					"repository "+name+" is named by a digest or CID and cannot be changed"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
