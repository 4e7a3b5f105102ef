// Package server serves the registry: Distribution's app with Disco's handlers around it,
// on the listener, TLS and debug settings of Disco's configuration.
package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path"
	"slices"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/health"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/listener"
	metrics "github.com/docker/go-metrics"
	gorhandlers "github.com/gorilla/handlers"

	"github.com/discoregistry/disco/internal/api"
	"github.com/discoregistry/disco/internal/config"
	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/index"
	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/layout"
	"github.com/discoregistry/disco/internal/mirror"
	"github.com/discoregistry/disco/internal/ui"
)

const defaultDrainTimeout = 30 * time.Second

// Server is a running registry.
type Server struct {
	cfg    *config.Config
	app    *handlers.App
	http   *http.Server
	debug  *http.Server
	health *health.Registry
	index  *index.Index // nil with ui.enabled false
	log    *slog.Logger
}

// Backend is what the registry is built on.
type Backend struct {
	// Nodes keep the registry: each is flushed after a write and checked for health.
	Nodes []ipfs.Node
	// Store is the registry's storage, over the nodes.
	Store driver.Store
	// Global files pushed images under their digest and CID, and clones CIDs.
	Global *global.Global
	// Mirror, if set, serves the repositories of the registry proxy.remoteurl names, in
	// place of Distribution's pull-through cache.
	Mirror *mirror.Mirror
	// Index, if set, is the index of the registry the web page shows; nil serves no page.
	Index *index.Index
}

// New builds the registry on b. It does not listen yet.
func New(ctx context.Context, cfg *config.Config, b Backend, log *slog.Logger) (*Server, error) {
	store, g := b.Store, b.Global
	reg := cfg.Registry
	reg.Storage[driver.Name] = configuration.Parameters{driver.ParamStore: store}
	reg.Middleware = maps.Clone(reg.Middleware)
	if reg.Middleware == nil {
		reg.Middleware = map[string][]configuration.Middleware{}
	}
	plain, err := plainRegistry(reg)
	if err != nil {
		return nil, err
	}
	reg.Middleware["registry"] = slices.Clone(reg.Middleware["registry"])
	if reg.Proxy.RemoteURL != "" {
		if b.Mirror == nil {
			return nil, errors.New("proxy.remoteurl: no mirror to serve it")
		}
		// Distribution's own pull-through cache would publish nothing and could not ask
		// peers: the mirror, below global, serves instead.
		reg.Proxy = configuration.Proxy{}
		reg.Middleware["registry"] = append(reg.Middleware["registry"], b.Mirror.Middleware())
	}
	reg.Middleware["registry"] = append(reg.Middleware["registry"], g.Middleware(plain))
	ix := b.Index
	if ix != nil {
		// Last, to see what global does too.
		reg.Middleware["registry"] = append(reg.Middleware["registry"], ix.Middleware())
	}
	if reg.HTTP.Secret == "" {
		secret, err := uploadSecret(cfg.IPFS.Uploads)
		if err != nil {
			return nil, err
		}
		reg.HTTP.Secret = secret
	}
	ac, err := edgeController(reg)
	if err != nil {
		return nil, err
	}
	app, err := newApp(ctx, reg)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, app: app, health: health.NewRegistry(), index: ix, log: log}
	app.RegisterHealthChecks(s.health)
	for i, node := range b.Nodes {
		name := "ipfs"
		if len(b.Nodes) > 1 {
			name = fmt.Sprintf("ipfs node %d", i)
		}
		s.health.Register(name, health.CheckFunc(func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := node.Stat(ctx, "/")
			return err
		}))
	}

	ext := api.New(reg.HTTP.Prefix, store, log)
	var h http.Handler = app
	h = ext.Handler(h)
	h = durable(h, b.Nodes, log)
	h = global.ReadOnly(h, reg.HTTP.Prefix)
	h = limitUploads(h, cmp.Or(cfg.Disco.MaxUploads, DefaultMaxUploads), reg.HTTP.Prefix)
	h = api.Errors(h, reg.HTTP.Prefix)
	h = unavailable(h)
	h = authenticate(h, ac, reg.HTTP.Prefix)
	h = s.withHealth(h)
	if ix != nil {
		page, err := newUI(reg, ac, ix, ext, store, log)
		if err != nil {
			return nil, err
		}
		h = page.Handler(h)
	}
	h = recoverPanics(h, log)
	if !reg.Log.AccessLog.Disabled {
		h = gorhandlers.CombinedLoggingHandler(os.Stdout, h)
	}
	h = bodyTimeout(h, cmp.Or(cfg.Disco.BodyTimeout, DefaultBodyTimeout))
	tlsConf, err := tlsConfig(reg.HTTP)
	if err != nil {
		return nil, err
	}
	s.http = &http.Server{Handler: h, TLSConfig: tlsConf, ReadHeaderTimeout: time.Minute}
	if reg.HTTP.H2C.Enabled {
		s.http.Protocols = new(http.Protocols)
		s.http.Protocols.SetHTTP1(true)
		s.http.Protocols.SetHTTP2(!reg.HTTP.HTTP2.Disabled)
		s.http.Protocols.SetUnencryptedHTTP2(true)
	}
	if reg.HTTP.Debug.Addr != "" {
		s.debug = &http.Server{Addr: reg.HTTP.Debug.Addr, Handler: s.debugMux(), ReadHeaderTimeout: time.Minute}
	}
	return s, nil
}

// newUI builds the web page, guarded by the registry's access controller ac, if any.
func newUI(reg *configuration.Configuration, ac *onceController, ix *index.Index, ext *api.API, store driver.Store, log *slog.Logger) (*ui.UI, error) {
	o := ui.Options{Index: ix, Namespace: ix.Namespace(), Referrers: ext.Referrers, Prefix: reg.HTTP.Prefix, Log: log,
		Cloned: func(ctx context.Context, hex string) bool {
			ok, _ := driver.Exists(ctx, store, path.Join(layout.Repository(hex), global.ClonedMarker))
			return ok
		}}
	if ac != nil {
		o.Access = ac
	}
	return ui.New(o)
}

// newApp builds Distribution's app, which panics on settings it cannot use.
func newApp(ctx context.Context, reg *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("registry configuration: %v", r)
		}
	}()
	return handlers.NewApp(ctx, reg), nil
}

// Listen opens the registry's listener.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := listener.NewListener(s.cfg.Net, s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	return ln, nil
}

// Serve serves on ln until ctx ends, then shuts down gracefully: requests in flight get
// http.draintimeout (default 30s) to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.index != nil {
		ictx, stop := context.WithCancel(ctx)
		indexDone := make(chan struct{})
		defer func() {
			stop()
			<-indexDone
		}()
		go func() {
			defer close(indexDone)
			if err := s.index.Run(ictx); err != nil {
				s.log.Error("index stopped: the web page lists nothing", "err", err)
			}
		}()
	}
	errs := make(chan error, 2)
	go func() {
		if s.http.TLSConfig != nil {
			errs <- s.http.ServeTLS(ln, "", "")
		} else {
			errs <- s.http.Serve(ln)
		}
	}()
	if s.debug != nil {
		go func() { errs <- s.debug.ListenAndServe() }()
		s.log.Info("debug server listening", "addr", s.debug.Addr)
	}
	var err error
	select {
	case err = <-errs:
	case <-ctx.Done():
	}
	drain := s.cfg.Registry.HTTP.DrainTimeout
	if drain == 0 {
		drain = defaultDrainTimeout
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	s.log.Info("shutting down", "drain", drain)
	err = errors.Join(err, s.http.Shutdown(sctx))
	if s.debug != nil {
		err = errors.Join(err, s.debug.Shutdown(sctx))
	}
	err = errors.Join(err, s.app.Shutdown())
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// withHealth answers "/" (the process is up) and /debug/health (its checks pass). A
// browser's GET / goes to the web page instead (ui.UI.Handler), when it is on.
func (s *Server) withHealth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
		case "/debug/health":
			s.serveHealth(w, r, false)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// serveHealth answers 200 when every check passes, 503 otherwise; with details, it names
// the failing checks and their errors. Only the debug address, which the operator
// controls, gives details: the registry port is open to anyone.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request, details bool) {
	checks := s.health.CheckStatus(r.Context())
	w.Header().Set("Content-Type", "application/json")
	if len(checks) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	if !details {
		checks = map[string]string{}
	}
	json.NewEncoder(w).Encode(checks)
}

func (s *Server) debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/health", func(w http.ResponseWriter, r *http.Request) { s.serveHealth(w, r, true) })
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if p := s.cfg.Registry.HTTP.Debug.Prometheus; p.Enabled {
		path := p.Path
		if path == "" {
			path = "/metrics"
		}
		mux.Handle(path, metrics.Handler())
	}
	return mux
}

// recoverPanics turns a panic in a handler into an OCI error reply and a log line.
func recoverPanics(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v)
				errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail("internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
