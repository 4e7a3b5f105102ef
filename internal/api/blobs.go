package api

import (
	"io"
	"maps"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/layout"
)

// serveBlob answers a GET of a whole blob: Distribution answers it as a HEAD, with its
// checks, headers and errors, and the body is read from the store here. Distribution
// reads every blob it serves through a 4 MiB buffer it allocates for the request: with
// the small blobs most images are made of, collecting those buffers took more than half
// the CPU of pulls. Anything else (a range, an answer other than 200, a repository named
// by a CID, whose blobs global fetches as they are asked for) Distribution answers.
func (a *API) serveBlob(w http.ResponseWriter, r *http.Request, next http.Handler, name string, d digest.Digest) {
	if _, ok := global.ParseCIDName(name); ok || r.Header.Get("Range") != "" {
		next.ServeHTTP(w, r)
		return
	}
	head := r.Clone(r.Context())
	head.Method = http.MethodHead
	rec := &headRecorder{header: http.Header{}}
	next.ServeHTTP(rec, head)
	if rec.status != http.StatusOK {
		next.ServeHTTP(w, r)
		return
	}
	rc, err := a.store.Reader(r.Context(), layout.Blob(d), 0)
	if err != nil { // removed since: Distribution says so
		next.ServeHTTP(w, r)
		return
	}
	defer rc.Close()
	maps.Copy(w.Header(), rec.header)
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc) // a client gone, or a read failing, cuts the body short of its length
}

// headRecorder keeps the status and headers of a HEAD answer.
type headRecorder struct {
	header http.Header
	status int
}

func (h *headRecorder) Header() http.Header { return h.header }

func (h *headRecorder) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *headRecorder) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return len(b), nil
}
