package ui_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"

	"github.com/discoregistry/disco/internal/index"
	"github.com/discoregistry/disco/internal/index/indextest"
	"github.com/discoregistry/disco/internal/ui"
)

const signatureType = "application/vnd.example.signature.v1"

// fixture is a registry holding the images the page tests look at.
type fixture struct {
	reg                *indextest.Registry
	web, multi, child  digest.Digest
	webLayer, arm64Lay digest.Digest
	cid, clonedCID     string
	handler            http.Handler
}

func randomCID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	mh, err := multihash.Sum(b, multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.DagProtobuf, mh).String()
}

func image(t testing.TB, labels map[string]string, history ...string) ggcr.Image {
	t.Helper()
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Labels = labels
	for _, h := range history {
		cf.History = append(cf.History, ggcr.History{CreatedBy: h, Created: ggcr.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}})
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func firstLayer(t testing.TB, img ggcr.Image) digest.Digest {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	h, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

func newFixture(t testing.TB, access auth.AccessController) *fixture {
	t.Helper()
	f := &fixture{reg: indextest.New(t, index.Options{}, nil), cid: randomCID(t), clonedCID: randomCID(t)}
	web := image(t, map[string]string{"org.opencontainers.image.title": "The web app"}, "COPY web /srv", "RUN make install")
	f.web = f.reg.Push(t, "team/app/web", "v1", web)
	f.webLayer = firstLayer(t, web)
	// What global addressing files for it.
	f.reg.Push(t, f.web.Encoded(), "latest", web)
	f.reg.Tag(t, f.web.Encoded(), f.cid, f.web)
	f.reg.Push(t, f.cid, "latest", web)

	amd64, arm64 := image(t, nil), image(t, nil)
	f.arm64Lay = firstLayer(t, arm64)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd64, Descriptor: ggcr.Descriptor{Platform: &ggcr.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm64, Descriptor: ggcr.Descriptor{Platform: &ggcr.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}})
	f.multi = f.reg.PushIndex(t, "multi/arch", "v1", idx)
	h, _ := arm64.Digest()
	f.child = digest.Digest(h.String())
	f.reg.Push(t, f.clonedCID, "latest", image(t, nil))
	f.reg.Sync(t)

	page, err := ui.New(ui.Options{
		Index:     f.reg.Index,
		Namespace: f.reg.NS,
		Access:    access,
		Referrers: func(_ context.Context, name string, subject digest.Digest) ([]v1.Descriptor, error) {
			if name != "team/app/web" || subject != f.web {
				return nil, nil
			}
			return []v1.Descriptor{{MediaType: v1.MediaTypeImageManifest, ArtifactType: signatureType,
				Digest: digest.FromString("signature"), Size: 512, Annotations: map[string]string{"org.example.signer": "ci"}}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.handler = page.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "next handler")
	}))
	return f
}

type result struct {
	status int
	header http.Header
	body   string
}

func (f *fixture) get(t testing.TB, method, path string, header ...string) result {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Host = "registry.example:1970"
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	return result{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

func TestPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	unknown := randomCID(t)
	for _, tc := range []struct {
		name, method, path string
		accept             string
		status             int
		want, not          []string
	}{
		{name: "a browser's GET /", path: "/", accept: browser, status: http.StatusFound},
		{name: "a liveness check's GET /", path: "/", status: http.StatusOK, want: []string{"next handler"}},
		{name: "the registry API", path: "/v2/", accept: browser, status: http.StatusOK, want: []string{"next handler"}},
		{name: "the list", path: "/ui/", status: http.StatusOK,
			want: []string{`href="/ui/r/team/app/web"`, `href="/ui/r/team/app/web:v1"`, `href="/ui/r/multi/arch"`, f.clonedCID + `</a> <span class="cloned">`},
			not:  []string{f.web.Encoded(), f.cid, "still reading"}},
		{name: "the list with the global names", path: "/ui/?global=1", status: http.StatusOK,
			want: []string{"team/app/web", f.web.Encoded(), f.cid, f.clonedCID}},
		{name: "a search by name", path: "/ui/search?q=app/w", status: http.StatusOK,
			want: []string{`href="/ui/r/team/app/web"`}, not: []string{"multi/arch"}},
		{name: "a search that finds nothing", path: "/ui/search?q=nothing-like-it", status: http.StatusOK, want: []string{`id="empty"`}},
		{name: "a search by layer", path: "/ui/search?q=" + f.webLayer.String(), status: http.StatusOK,
			want: []string{"a layer of", `href="/ui/r/team/app/web@` + f.web.String() + `"`, "team/app/web:v1", f.cid + ":latest"}},
		{name: "a search by a platform's layer, bare hex", path: "/ui/search?q=" + f.arm64Lay.Encoded(), status: http.StatusOK,
			want: []string{"multi/arch:v1", `href="/ui/r/multi/arch@` + f.child.String() + `"`}},
		{name: "a search by CID", path: "/ui/search?q=" + f.cid, status: http.StatusOK,
			want: []string{`id="held"`, f.web.String(), `href="/ui/r/team/app/web:v1"`}},
		{name: "a search by a CID not held", path: "/ui/search?q=" + unknown, status: http.StatusOK,
			want: []string{`id="not-held"`, `href="/ui/r/` + unknown + `:latest"`}},
		{name: "a repository", path: "/ui/r/team/app/web", status: http.StatusOK,
			want: []string{`href="/ui/r/team/app/web:v1"`, "docker pull registry.example:1970/team/app/web:v1", "image"}},
		{name: "an image", path: "/ui/r/team/app/web:v1", status: http.StatusOK, want: []string{
			f.web.String(), f.cid, "pushed to this Disco", "all 3 blobs held here",
			"The web app", "RUN make install", "linux/amd64", f.webLayer.String(),
			"docker pull registry.example:1970/team/app/web:v1",
			"docker pull registry.example:1970/team/app/web@" + f.web.String(),
			"docker pull registry.example:1970/" + f.cid,
			"docker pull &lt;any-disco&gt;:1970/" + f.cid,
			signatureType, "org.example.signer",
		}, not: []string{`<dd id="kind">image <code>`}},
		{name: "an index", path: "/ui/r/multi/arch:v1", status: http.StatusOK, want: []string{
			"linux/amd64", "linux/arm64/v8", `href="/ui/r/multi/arch@` + f.child.String() + `"`, "index"}},
		{name: "a platform of an index", path: "/ui/r/multi/arch@" + f.child.String(), status: http.StatusOK,
			want: []string{"none of its own", `href="/ui/r/multi/arch:v1"`}},
		{name: "a cloned image", path: "/ui/r/" + f.clonedCID + ":latest", status: http.StatusOK,
			want: []string{"cloned by its CID", "docker pull registry.example:1970/" + f.clonedCID}},
		{name: "an unknown repository", path: "/ui/r/no/such:v1", status: http.StatusNotFound},
		{name: "an unknown tag", path: "/ui/r/team/app/web:v9", status: http.StatusNotFound},
		{name: "an unknown manifest", path: "/ui/r/team/app/web@" + digest.FromString("x").String(), status: http.StatusNotFound},
		{name: "an invalid name", path: "/ui/r/Team:v1", status: http.StatusNotFound},
		{name: "an unknown page", path: "/ui/nothing", status: http.StatusNotFound},
		{name: "a write", method: http.MethodPost, path: "/ui/", status: http.StatusMethodNotAllowed},
		{name: "the style sheet", path: "/ui/static/style.css", status: http.StatusOK, want: []string{"user-select: all"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.method == "" {
				tc.method = http.MethodGet
			}
			res := f.get(t, tc.method, tc.path, "Accept", tc.accept)
			if res.status != tc.status {
				t.Fatalf("%s %s: %d, want %d\n%s", tc.method, tc.path, res.status, tc.status, res.body)
			}
			for _, s := range tc.want {
				if !strings.Contains(res.body, s) {
					t.Errorf("%s %s lacks %q:\n%s", tc.method, tc.path, s, res.body)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(res.body, s) {
					t.Errorf("%s %s shows %q, which it should not:\n%s", tc.method, tc.path, s, res.body)
				}
			}
			if tc.status == http.StatusFound {
				if loc := res.header.Get("Location"); loc != "/ui/" {
					t.Errorf("%s %s: Location %q, want /ui/", tc.method, tc.path, loc)
				}
			}
			if strings.HasPrefix(tc.path, "/ui/") && !strings.Contains(res.header.Get("Content-Security-Policy"), "default-src 'none'") {
				t.Errorf("%s %s: Content-Security-Policy %q, want default-src 'none'", tc.method, tc.path, res.header.Get("Content-Security-Policy"))
			}
		})
	}
}

// TestAuth checks that htpasswd guards the page as it guards the registry: a browser gets
// a basic-auth challenge, and in with the right password.
func TestAuth(t *testing.T) {
	t.Parallel()
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, fmt.Appendf(nil, "alice:%s\n", hash), 0o600); err != nil {
		t.Fatal(err)
	}
	access, err := auth.GetAccessController("htpasswd", map[string]any{"realm": "disco", "path": path})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, access)
	basic := func(user, password string) string {
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.SetBasicAuth(user, password)
		return req.Header.Get("Authorization")
	}
	for _, tc := range []struct {
		name, path, authorization string
		status                    int
	}{
		{"no credentials", "/ui/", "", http.StatusUnauthorized},
		{"a wrong password", "/ui/", basic("alice", "guess"), http.StatusUnauthorized},
		{"an unknown user", "/ui/", basic("bob", "secret"), http.StatusUnauthorized},
		{"the right password", "/ui/", basic("alice", "secret"), http.StatusOK},
		{"an image, no credentials", "/ui/r/team/app/web:v1", "", http.StatusUnauthorized},
		{"an image, the right password", "/ui/r/team/app/web:v1", basic("alice", "secret"), http.StatusOK},
		{"a search, no credentials", "/ui/search?q=web", "", http.StatusUnauthorized},
		{"a browser's GET /, which only redirects", "/", "", http.StatusFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			header := []string{"Accept", browser}
			if tc.authorization != "" {
				header = append(header, "Authorization", tc.authorization)
			}
			res := f.get(t, http.MethodGet, tc.path, header...)
			if res.status != tc.status {
				t.Fatalf("GET %s: %d, want %d\n%s", tc.path, res.status, tc.status, res.body)
			}
			if ch := res.header.Get("WWW-Authenticate"); tc.status == http.StatusUnauthorized && ch != `Basic realm="disco"` {
				t.Errorf("GET %s: WWW-Authenticate %q, want Basic realm=\"disco\"", tc.path, ch)
			}
			if tc.status == http.StatusUnauthorized && strings.Contains(res.body, "team/app/web") {
				t.Errorf("GET %s without the right credentials shows a repository:\n%s", tc.path, res.body)
			}
		})
	}
}
