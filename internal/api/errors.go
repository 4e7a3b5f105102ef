package api

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
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

// Errors makes every /v2/ error answer an OCI error body with the code that fits, and only
// one:
//   - a path the API does not know gets 404 with an error body, one whose repository name
//     is invalid gets NAME_INVALID, one whose tag, digest or upload is malformed gets
//     TAG_INVALID, DIGEST_INVALID or BLOB_UPLOAD_UNKNOWN, where Distribution answers with
//     plain text, blames the name, or fails with a 500 on a name too long;
//   - an upload request with a malformed Content-Range gets 416 RANGE_INVALID, not 500;
//   - an error Distribution or net/http answers in plain text (416 for a range outside a
//     blob) gets an error body;
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
		if err := badRequest(p, matched); err != nil {
			errcode.ServeJSON(w, err)
			return
		}
		if err := badRange(r, m); err != nil {
			errcode.ServeJSON(w, err)
			return
		}
		next.ServeHTTP(&oneErrorBody{ResponseWriter: w}, r)
	})
}

// badRequest returns the error for a /v2/ path that names an invalid repository, or that
// the API does not match.
func badRequest(p string, matched bool) error {
	sm := namedPath.FindStringSubmatch(p)
	if sm == nil {
		if matched {
			return nil
		}
		return errNoEndpoint
	}
	name, kind, rest := sm[1], sm[2], strings.TrimPrefix(sm[3], "/")
	if !validName.MatchString(name) || len(name) > maxNameLength {
		return errcode.ErrorCodeNameInvalid.WithDetail("invalid repository name " + name)
	}
	switch {
	case matched:
		return nil
	case kind == "manifests" && strings.Contains(rest, ":"):
		return errcode.ErrorCodeDigestInvalid.WithDetail("invalid digest " + rest)
	case kind == "manifests":
		return errcode.ErrorCodeTagInvalid.WithDetail("invalid tag " + rest)
	case kind == "blobs" && strings.HasPrefix(rest, "uploads/"):
		return errcode.ErrorCodeBlobUploadUnknown.WithDetail("invalid upload " + strings.TrimPrefix(rest, "uploads/"))
	case kind == "blobs":
		return errcode.ErrorCodeDigestInvalid.WithDetail("invalid digest " + rest)
	}
	return errNoEndpoint
}

// errNoEndpoint answers a /v2/ path the API does not know.
var errNoEndpoint = errcode.Register("disco", errcode.ErrorDescriptor{
	Value:          "NOT_FOUND",
	Message:        "no such API endpoint",
	HTTPStatusCode: http.StatusNotFound,
}).WithDetail(nil)

// validContentRange reports whether cr is a Content-Range of an upload request as
// Distribution parses it: "<start>-<end>", two decimal numbers that fit an int64.
// Distribution answers any other with a 500.
func validContentRange(cr string) bool {
	start, end, ok := strings.Cut(cr, "-")
	return ok && isOffset(start) && isOffset(end)
}

func isOffset(s string) bool {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return false
	}
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

// badRange refuses an upload request whose Content-Range is malformed.
func badRange(r *http.Request, m mux.RouteMatch) error {
	if m.Route == nil || m.Route.GetName() != v2.RouteNameBlobUploadChunk {
		return nil
	}
	if cr := r.Header.Get("Content-Range"); cr != "" && !validContentRange(cr) {
		return errcode.ErrorCodeRangeInvalid.WithDetail("malformed Content-Range " + cr)
	}
	return nil
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
	if status >= 400 && !strings.HasPrefix(o.Header().Get("Content-Type"), "application/json") {
		// Plain text from below: answer with an error body instead, and drop the text.
		o.wrote = true
		o.Header().Del("Content-Length")
		code := errcode.ErrorCodeUnknown
		if status == http.StatusRequestedRangeNotSatisfiable {
			code = errcode.ErrorCodeRangeInvalid
		}
		o.Header().Set("Content-Type", "application/json")
		o.ResponseWriter.WriteHeader(status)
		json.NewEncoder(o.ResponseWriter).Encode(errcode.Errors{code.WithMessage(http.StatusText(status))})
		return
	}
	o.ResponseWriter.WriteHeader(status)
}

func (o *oneErrorBody) Write(b []byte) (int, error) {
	if o.status == 0 {
		o.WriteHeader(http.StatusOK)
	}
	if o.status >= 400 && o.wrote {
		return len(b), nil
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
