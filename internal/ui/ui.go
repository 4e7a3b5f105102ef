// Package ui serves the registry's web page: its repositories, their tags, each image's
// manifest, CID, platforms, layers, config and referrers, and the commands that pull it.
// Pages are rendered on the server from embedded templates, need no JavaScript and make
// no request but to the registry itself. Lookups across the registry come from the
// index; everything about one image is read from the registry as a pull would read it.
package ui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/discoregistry/disco/internal/index"
)

//go:embed templates static
var files embed.FS

// Options configure the page.
type Options struct {
	Index *index.Index
	// Namespace is the registry as Distribution's app sees it (index.Index.Namespace).
	Namespace distribution.Namespace
	// Access guards the page as it guards the registry API; nil without auth.
	Access auth.AccessController
	// Referrers lists the manifests of a repository whose subject is a digest; nil
	// shows none.
	Referrers func(ctx context.Context, name string, subject digest.Digest) ([]v1.Descriptor, error)
	// Cloned reports whether the digest repository hex was made for a clone rather than
	// a push; nil takes none for one.
	Cloned func(ctx context.Context, hex string) bool
	// Prefix is Distribution's http.prefix: the page is served under Prefix/ui/.
	Prefix string
	Log    *slog.Logger
}

// UI serves the page.
type UI struct {
	opts   Options
	log    *slog.Logger
	base   string // "/ui/", with the prefix
	pages  map[string]*template.Template
	static http.Handler
}

// readTimeout bounds what one page reads from the registry; a CID repository that is
// not here yet is cloned within disco.clonetimeout, which this leaves room for.
const readTimeout = 2 * time.Minute

// New returns the page.
func New(o Options) (*UI, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	u := &UI{opts: o, log: o.Log, base: strings.TrimSuffix(o.Prefix, "/") + "/ui/", pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"size":  humanSize,
		"short": shortDigest,
		"when":  when,
		"url":   u.url,
		"plus":  func(a, b int) int { return a + b },
	}
	for _, page := range []string{"list", "repo", "image", "uses", "cid", "error"} {
		t, err := template.New(page).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", page, err)
		}
		u.pages[page] = t
	}
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	u.static = http.StripPrefix(u.base+"static/", http.FileServerFS(static))
	return u, nil
}

// Path is where the page is served, such as "/ui/".
func (u *UI) Path() string { return u.base }

// Handler serves the page under Path, redirects a browser's GET / there, and passes
// every other request to next: a GET / that does not accept HTML (a liveness check) is
// next's to answer.
func (u *UI) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" && r.Method == http.MethodGet && acceptsHTML(r) {
			http.Redirect(w, r, u.base, http.StatusFound)
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, u.base)
		if !ok {
			if r.URL.Path+"/" == u.base {
				http.Redirect(w, r, u.base, http.StatusMovedPermanently)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if strings.HasPrefix(rest, "static/") {
			h.Set("Cache-Control", "max-age=3600")
			u.static.ServeHTTP(w, r)
			return
		}
		h.Set("Cache-Control", "no-cache")
		ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		switch {
		case rest == "":
			if u.authorize(w, r, catalogAccess) {
				u.serveList(w, r, r.URL.Query().Get("q"))
			}
		case rest == "search":
			if u.authorize(w, r, catalogAccess) {
				u.serveSearch(w, r)
			}
		case strings.HasPrefix(rest, "r/"):
			u.serveRef(w, r, strings.TrimPrefix(rest, "r/"))
		default:
			u.fail(w, r, http.StatusNotFound, errors.New("no such page"))
		}
	})
}

func acceptsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// catalogAccess is what Distribution asks of a client that lists the catalog.
var catalogAccess = auth.Access{Resource: auth.Resource{Type: "registry", Name: "catalog"}, Action: "*"}

func pullAccess(name string) auth.Access {
	return auth.Access{Resource: auth.Resource{Type: "repository", Name: name}, Action: "pull"}
}

// authorize checks the request's credentials as Distribution checks those of an API
// request, and answers it with the access controller's challenge if they do not do:
// htpasswd's makes a browser ask for a user name and password.
func (u *UI) authorize(w http.ResponseWriter, r *http.Request, access auth.Access) bool {
	if u.opts.Access == nil {
		return true
	}
	_, err := u.opts.Access.Authorized(r, access)
	if err == nil {
		return true
	}
	var ch auth.Challenge
	if errors.As(err, &ch) {
		ch.SetHeaders(r, w)
		u.fail(w, r, http.StatusUnauthorized, errors.New("this registry wants credentials"))
		return false
	}
	u.log.Error("ui: authorize", "err", err)
	u.fail(w, r, http.StatusUnauthorized, errors.New("not authorized"))
	return false
}

// frame is what every page shows around its content.
type frame struct {
	Page   string // which page: list, search, uses, cid, repo, image or error
	Title  string
	Base   string
	Host   string
	Query  string
	Status index.Status
}

func (u *UI) frame(r *http.Request, page, title string) frame {
	return frame{Page: page, Title: title, Base: u.base, Host: r.Host, Query: r.URL.Query().Get("q"), Status: u.opts.Index.Status()}
}

// render renders a page, whose data embeds a frame.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var b strings.Builder
	if err := u.pages[page].ExecuteTemplate(&b, "layout", data); err != nil {
		u.log.Error("ui: render", "page", page, "err", err)
		http.Error(w, "could not render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write([]byte(b.String()))
	}
}

type errorPage struct {
	frame
	Code    int
	Message string
}

func (u *UI) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	if status >= 500 {
		u.log.Error("ui: page", "path", r.URL.Path, "err", err)
	}
	u.render(w, r, status, "error", errorPage{frame: u.frame(r, "error", http.StatusText(status)), Code: status, Message: err.Error()})
}

// url returns the path of a page: "" for the list, "search", or a reference
// ("name", "name:tag", "name@digest").
func (u *UI) url(page string) string {
	if page == "" || page == "search" {
		return u.base + page
	}
	return u.base + "r/" + page
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func shortDigest(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}

// when formats a time.Time or *time.Time, a dash for none.
func when(v any) string {
	var t time.Time
	switch v := v.(type) {
	case time.Time:
		t = v
	case *time.Time:
		if v != nil {
			t = *v
		}
	}
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}
