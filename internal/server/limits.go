package server

import (
	"io"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/gorilla/mux"
)

// DefaultBodyTimeout is how long a request body may send nothing before the request is
// cut off, unless disco.bodytimeout says otherwise: a client that stalls mid-upload does
// not hold its connection, its upload's buffers and an upload slot for ever.
const DefaultBodyTimeout = time.Minute

// DefaultMaxUploads is how many blob upload requests are served at once unless
// disco.maxuploads says otherwise. Each holds up to about 5 MiB of chunk buffers.
const DefaultMaxUploads = 64

// bodyTimeout gives request bodies the idle timeout d.
func bodyTimeout(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			// On a copy: net/http looks at its own request's body once the handler is done.
			r = r.WithContext(r.Context())
			r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: d}
		}
		next.ServeHTTP(w, r)
	})
}

// idleBody moves its connection's read deadline before every read.
type idleBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.timeout)) // not every connection has one
	return b.ReadCloser.Read(p)
}

// releaseAfter is how long no upload request is served before the memory uploads took goes
// back to the system.
const releaseAfter = time.Second

// limitUploads answers 429 TOOMANYREQUESTS to a blob upload request while n others are
// being served. prefix is Distribution's http.prefix.
//
// Uploads take chunk buffers of 1 MiB, several each, and drop them when their request is
// done. A registry that then falls idle allocates nothing, so Go's runtime neither
// collects them nor gives their memory back until its forced collection, every two
// minutes, and then gradually: a burst of uploads, or of clients that stalled, would leave
// the process holding hundreds of MiB it does not use. Once no upload request has been
// served for releaseAfter, the memory goes back at once.
func limitUploads(next http.Handler, n int, prefix string) http.Handler {
	router := v2.RouterWithPrefix(prefix)
	slots := make(chan struct{}, n)
	release := time.AfterFunc(time.Hour, debug.FreeOSMemory)
	release.Stop()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m mux.RouteMatch
		if !router.Match(r, &m) || (m.Route.GetName() != v2.RouteNameBlobUpload && m.Route.GetName() != v2.RouteNameBlobUploadChunk) {
			next.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() {
				if <-slots; len(slots) == 0 {
					release.Reset(releaseAfter)
				}
			}()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			errcode.ServeJSON(w, errcode.ErrorCodeTooManyRequests.WithDetail("too many uploads in progress; try again"))
		}
	})
}
