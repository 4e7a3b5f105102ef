package server

import (
	"encoding/json"
	"net/http"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/discoregistry/disco/internal/ack"
)

// unavailable answers 503 UNAVAILABLE, rather than a 500, a request that failed because
// a part of the storage could not be reached (a Kubo daemon that is down): the client
// may try again, and what is on the other nodes is served all along.
func unavailable(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, scope := ack.Track(r.Context())
		next.ServeHTTP(&unavailableWriter{ResponseWriter: w, scope: scope}, r.WithContext(ctx))
	})
}

type unavailableWriter struct {
	http.ResponseWriter
	scope    *ack.Scope
	answered bool // with 503: what comes from below is dropped
	sent     bool
}

func (u *unavailableWriter) WriteHeader(status int) {
	if u.sent {
		return
	}
	u.sent = true
	err := u.scope.Unavailable()
	if status < 500 || err == nil {
		u.ResponseWriter.WriteHeader(status)
		return
	}
	u.answered = true
	h := u.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Retry-After", "2")
	u.ResponseWriter.WriteHeader(http.StatusServiceUnavailable)
	json.NewEncoder(u.ResponseWriter).Encode(errcode.Errors{errcode.ErrorCodeUnavailable.WithDetail(err.Error())})
}

func (u *unavailableWriter) Write(b []byte) (int, error) {
	if !u.sent {
		u.WriteHeader(http.StatusOK)
	}
	if u.answered {
		return len(b), nil
	}
	return u.ResponseWriter.Write(b)
}

// Flush lets blob downloads stream.
func (u *unavailableWriter) Flush() {
	if f, ok := u.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (u *unavailableWriter) Unwrap() http.ResponseWriter { return u.ResponseWriter }
