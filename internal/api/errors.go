package api

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/gorilla/mux"
)

// namedPath matches /v2/ paths that name a repository, whatever the name looks like.
var namedPath = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs|tags|referrers)(/.*)?$`)

// validName is the OCI Distribution spec's repository name, stricter than what
// Distribution's router takes (which lets the first component be a host name).
var validName = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

const maxNameLength = 255

// Errors makes every /v2/ error answer an OCI error body, and only one:
//   - a path the API does not know gets 404 with an error body, and one whose repository
//     name is invalid gets NAME_INVALID, where Distribution answers with plain text, takes
//     names the spec does not, or fails with a 500 on a name too long;
//   - Distribution's dispatcher writes an error body twice when a repository cannot be
//     resolved; the second is dropped.
func Errors(next http.Handler, prefix string) http.Handler {
	router := v2.RouterWithPrefix(prefix)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, prefix)
		if !strings.HasPrefix(p, "/v2/") {
			next.ServeHTTP(w, r)
			return
		}
		var m mux.RouteMatch
		matched := router.Match(r, &m) || m.MatchErr == mux.ErrMethodMismatch || referrersPath.MatchString(p)
		if sm := namedPath.FindStringSubmatch(p); sm != nil && (!matched || !validName.MatchString(sm[1]) || len(sm[1]) > maxNameLength) {
			errcode.ServeJSON(w, errcode.ErrorCodeNameInvalid.WithDetail("invalid repository name "+sm[1]))
			return
		}
		if !matched {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"errors":[{"code":"NOT_FOUND","message":"no such API endpoint"}]}` + "\n"))
			return
		}
		next.ServeHTTP(&oneErrorBody{ResponseWriter: w}, r)
	})
}

// oneErrorBody passes on a response, but of an error response only the first body write.
type oneErrorBody struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (o *oneErrorBody) WriteHeader(status int) {
	if o.status != 0 {
		return
	}
	o.status = status
	o.ResponseWriter.WriteHeader(status)
}

func (o *oneErrorBody) Write(b []byte) (int, error) {
	if o.status >= 400 && o.wrote {
		return len(b), nil
	}
	if o.status == 0 {
		o.status = http.StatusOK
	}
	o.wrote = true
	return o.ResponseWriter.Write(b)
}

// Flush lets blob downloads stream.
func (o *oneErrorBody) Flush() {
	if f, ok := o.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (o *oneErrorBody) Unwrap() http.ResponseWriter { return o.ResponseWriter }
