package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/discoregistry/disco/internal/ack"
	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/ipfs"
)

const flushTimeout = time.Minute

// durable makes every request that stores something persist the node's MFS before its
// response leaves: a client told "created" or "deleted" keeps its push, or its delete, if
// Disco dies next, and an upload in progress keeps what its POST and PATCHes brought.
// Persisting is cheap: the node appends the request's changes to its journal. A request
// that something below it could not persist (ack.Fail) is answered with an error. A
// request that only reads gets a driver.WithMemo context instead.
func durable(next http.Handler, nodes []ipfs.Node, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r.WithContext(driver.WithMemo(r.Context())))
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
		if err == nil {
			err = scope.End() // what a node found lost while it flushed for another request
		}
		if err != nil {
			log.Error("persist changes", "method", r.Method, "path", r.URL.Path, "err", err)
			for k := range w.Header() {
				delete(w.Header(), k)
			}
			if driver.IsDiskFull(err) {
				serveDiskFull(w)
				return
			}
			errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail("could not persist the change: "+err.Error()))
			return
		}
		held.release()
	})
}

// serveDiskFull answers a write that the disk had no room for: 507 Insufficient Storage,
// with Distribution's UNKNOWN code (OCI has none for it) and a message that says what is
// wrong, so that the client's user can tell the operator, and knows that the same push
// may work once space is freed. The log has the file and the call that failed.
func serveDiskFull(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInsufficientStorage)
	json.NewEncoder(w).Encode(errcode.Errors{errcode.ErrorCodeUnknown.WithMessage(
		"no space left on device: the registry's disk is full; try again once space is freed")})
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
