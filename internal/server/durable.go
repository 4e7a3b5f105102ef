package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/discoregistry/disco/internal/ack"
	"github.com/discoregistry/disco/internal/ipfs"
)

const flushTimeout = time.Minute

// durable makes every request that stores something persist the node's MFS before its
// response leaves: a client told "created" or "deleted" keeps its push, or its delete, if
// Disco dies next, and an upload in progress keeps what its POST and PATCHes brought.
// Persisting is cheap: the node appends the request's changes to its journal. A request
// that something below it could not persist (ack.Fail) is answered with an error.
func durable(next http.Handler, nodes []ipfs.Node, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		held := &heldResponse{ResponseWriter: w}
		rctx, scope := ack.Track(r.Context())
		next.ServeHTTP(held, r.WithContext(rctx))
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), flushTimeout)
		defer cancel()
		err := scope.End()
		for _, node := range nodes {
			if err == nil {
				err = node.Flush(ctx)
			}
		}
		if err != nil {
			log.Error("persist changes", "method", r.Method, "path", r.URL.Path, "err", err)
			for k := range w.Header() {
				delete(w.Header(), k)
			}
			errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail("could not persist the change: "+err.Error()))
			return
		}
		held.release()
	})
}

// heldResponse keeps a response back until release. The responses it holds are the short
// answers to writes, so holding the body in memory is cheap.
type heldResponse struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (h *heldResponse) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *heldResponse) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return h.body.Write(b)
}

func (h *heldResponse) release() {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	h.ResponseWriter.WriteHeader(h.status)
	h.ResponseWriter.Write(h.body.Bytes())
}
