package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/crypto/bcrypt"

	"github.com/discoregistry/disco/internal/kubotest"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// TestUI loads the web page of a Disco, in headless Chromium, with a nested name, a
// multi-arch index, an image with a signature and an SBOM attached, and an image held
// only by a peer, which the page fetches by its CID. It finds images by name, by a layer
// digest and by CID, and pulls the cloned one with docker, by the command the page
// shows. A screenshot of each page is kept: under $DISCO_E2E_ARTIFACTS if set.
func TestUI(t *testing.T) {
	t.Parallel()
	lookChromium(t)
	dk := needDocker(t)
	lookTool(t, "skopeo")
	peer := startDisco(t, discoOptions{})
	d := startDisco(t, discoOptions{Peers: []string{peer.PeerAddr()}})

	// GET / is still a liveness check, for clients that do not ask for HTML.
	if res := send(t, http.MethodGet, d.URL("/"), nil); res.status != http.StatusOK || len(res.body) != 0 {
		t.Errorf("GET / without Accept: text/html: %d %q, want 200 and no body", res.status, res.body)
	}
	if res := send(t, http.MethodGet, d.URL("/debug/health"), nil); res.status != http.StatusOK || strings.TrimSpace(string(res.body)) != "{}" {
		t.Errorf("GET /debug/health: %d %q, want 200 {}", res.status, res.body)
	}

	web := labelledImage(t, map[string]string{"org.opencontainers.image.title": "Disco web test"}, "RUN make install")
	webDigest := imageDigest(t, web).String()
	skopeoPush(t, layoutOf(t, web), d.Host+"/team/app/web:v1")
	webCID := cidOf(t, d, webDigest)

	dir, multiDigest, _ := writeIndexLayout(t, "v1",
		v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	skopeo(t, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "oci:"+dir+":v1", "docker://"+d.Host+"/multi/arch:v1")
	arm64, arm64Layer := platformLayer(t, dir, "arm64")

	subject := pushSubject(t, d, "signed/app:v1")
	sig := putReferrer(t, d, "signed/app", subject, signatureType)
	sbom := putReferrer(t, d, "signed/app", subject, sbomType)

	// Only the peer holds this one.
	onPeer := peer.Host + "/peer/only:v1"
	imageID := dk.importRandom(t, onPeer, 2<<20)
	peerDigest := dockerPush(t, dk, onPeer)
	peerCID := cidOf(t, peer, peerDigest)
	dk.run(t, "rmi", onPeer)

	b := newBrowser(t)

	t.Run("list", func(t *testing.T) {
		b.open(t, d.URL("/"), "list")
		if loc := b.location(t); loc != d.URL("/ui/") {
			t.Errorf("a browser's GET / ended at %s, want %s", loc, d.URL("/ui/"))
		}
		b.shot(t, "list")
		list := b.text(t, "#repositories")
		for _, name := range []string{"team/app/web", "multi/arch", "signed/app"} {
			if !strings.Contains(list, name) {
				t.Errorf("the repository list lacks %s:\n%s", name, list)
			}
		}
		if strings.Contains(list, webCID) || strings.Contains(list, strings.TrimPrefix(webDigest, "sha256:")) {
			t.Errorf("the repository list shows the digest or CID names of team/app/web by default:\n%s", list)
		}
	})

	t.Run("by name", func(t *testing.T) {
		b.open(t, d.URL("/ui/"), "list")
		b.search(t, "app/web", "search")
		b.shot(t, "search-by-name")
		if got := b.text(t, "#repositories"); !strings.Contains(got, "team/app/web") || strings.Contains(got, "multi/arch") {
			t.Errorf("searching app/web lists:\n%s\nwant team/app/web alone", got)
		}
		b.click(t, `a.repo[href$="/r/team/app/web"]`, "repo")
		b.shot(t, "repository")
		b.click(t, `#tags a.tag`, "image")
		b.shot(t, "image")
		if got := b.text(t, "#digest"); got != webDigest {
			t.Errorf("team/app/web:v1 shows digest %q, want %s", got, webDigest)
		}
		if got := b.text(t, "#cid"); got != webCID {
			t.Errorf("team/app/web:v1 shows CID %q, want %s", got, webCID)
		}
		page := b.text(t, "main")
		for _, want := range []string{
			"pushed to this Disco", "all 3 blobs held here", "Disco web test", "RUN make install",
			"docker pull " + d.Host + "/team/app/web:v1",
			"docker pull " + d.Host + "/team/app/web@" + webDigest,
			"docker pull " + d.Host + "/" + webCID,
			"docker pull <any-disco>:1970/" + webCID,
		} {
			if !strings.Contains(page, want) {
				t.Errorf("the page of team/app/web:v1 lacks %q:\n%s", want, page)
			}
		}
	})

	t.Run("by layer", func(t *testing.T) {
		b.open(t, d.URL("/ui/"), "list")
		b.search(t, arm64Layer, "uses")
		b.shot(t, "search-by-layer")
		if got := b.text(t, "#uses"); !strings.Contains(got, "multi/arch:v1") {
			t.Errorf("searching a layer of multi/arch's arm64 image lists:\n%s\nwant multi/arch:v1", got)
		}
		b.click(t, "#uses a.image", "image")
		b.shot(t, "platform")
		if got := b.text(t, "#digest"); got != arm64 {
			t.Errorf("the layer's image is %q, want the arm64 manifest %s", got, arm64)
		}
		b.click(t, `#uses a.image[href$="/r/multi/arch:v1"]`, "image")
		b.shot(t, "index")
		if got := b.text(t, "#digest"); got != multiDigest {
			t.Errorf("multi/arch:v1 shows digest %q, want %s", got, multiDigest)
		}
		platforms := b.text(t, "#platforms")
		for _, p := range []string{"linux/amd64", "linux/arm64/v8"} {
			if !strings.Contains(platforms, p) {
				t.Errorf("multi/arch:v1 lists platforms:\n%s\nwant %s among them", platforms, p)
			}
		}
	})

	t.Run("referrers", func(t *testing.T) {
		b.open(t, d.URL("/ui/r/signed/app:v1"), "image")
		b.shot(t, "signed")
		got := b.text(t, "#referrers")
		for _, want := range []string{signatureType, sbomType, shortHex(sig), shortHex(sbom)} {
			if !strings.Contains(got, want) {
				t.Errorf("the referrers of signed/app:v1 are:\n%s\nwant %s among them", got, want)
			}
		}
	})

	t.Run("by CID from a peer", func(t *testing.T) {
		b.open(t, d.URL("/ui/"), "list")
		b.search(t, peerCID, "cid")
		b.shot(t, "search-by-cid")
		if got := b.text(t, "#not-held"); !strings.Contains(got, "does not hold") {
			t.Errorf("a CID only the peer holds: %q, want it said not held", got)
		}
		b.click(t, "#fetch", "image")
		b.shot(t, "cloned")
		if got := b.text(t, "#digest"); got != peerDigest {
			t.Errorf("the image fetched by CID has digest %q, want %s", got, peerDigest)
		}
		if got := b.text(t, "#source"); !strings.Contains(got, "cloned by its CID") {
			t.Errorf("the image fetched by CID says %q, want it cloned", got)
		}
		// The page's command, run as it is shown.
		cmd := b.text(t, `code.cmd[data-kind="cid"]`)
		want := "docker pull " + d.Host + "/" + peerCID
		if cmd != want {
			t.Fatalf("the page shows %q, want %q", cmd, want)
		}
		dockerPull(t, dk, strings.TrimPrefix(cmd, "docker pull "), peerDigest, imageID)

		// The clone is in the list now, its only name here.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			b.open(t, d.URL("/ui/"), "list")
			list := b.text(t, "#repositories")
			if strings.Contains(list, peerCID+" cloned") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("10s after the clone, the repository list is:\n%s\nwant %s, cloned, in it", list, peerCID)
			}
		}
		b.shot(t, "list-with-clone")

		b.open(t, d.URL("/ui/"), "list")
		b.search(t, peerCID, "cid")
		b.shot(t, "search-by-cid-held")
		if got := b.text(t, "#held"); !strings.Contains(got, peerDigest) {
			t.Errorf("the cloned CID: %q, want it held, with manifest %s", got, peerDigest)
		}
	})
}

// TestUIAuth checks that htpasswd guards the page as it guards the registry API: the
// browser is asked for a password, and gets in with it.
func TestUIAuth(t *testing.T) {
	t.Parallel()
	lookChromium(t)
	lookTool(t, "skopeo")
	user, password := "e2e", fmt.Sprintf("pw-%x", randomBytes(t, 8))
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, fmt.Appendf(nil, "%s:%s\n", user, hash), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDisco(t, discoOptions{YAML: fmt.Sprintf("auth: {htpasswd: {realm: disco, path: %q}}", htpasswd)})
	skopeoPush(t, layoutOf(t, randomImage(t, 1<<10, 1)), d.Host+"/private/app:v1", "--dest-creds", user+":"+password)

	basic := "Basic " + encodeBasic(user, password)
	for _, tc := range []struct {
		name   string
		header []string
		status int
	}{
		{"no credentials", nil, http.StatusUnauthorized},
		{"a wrong password", []string{"Authorization", "Basic " + encodeBasic(user, password+"x")}, http.StatusUnauthorized},
		{"the password", []string{"Authorization", basic}, http.StatusOK},
	} {
		for _, path := range []string{"/ui/", "/ui/r/private/app:v1", "/ui/search?q=private"} {
			res := send(t, http.MethodGet, d.URL(path), nil, append([]string{"Accept", "text/html"}, tc.header...)...)
			if res.status != tc.status {
				t.Errorf("GET %s with %s: %d, want %d", path, tc.name, res.status, tc.status)
			}
			if ch := res.header.Get("WWW-Authenticate"); tc.status == http.StatusUnauthorized && ch != `Basic realm="disco"` {
				t.Errorf("GET %s with %s: WWW-Authenticate %q, want Basic realm=\"disco\"", path, tc.name, ch)
			}
		}
	}

	// In the browser, a user who cancels the password dialog, then one who types the
	// password in.
	b := newBrowser(t)
	var give atomic.Pointer[[2]string]
	var asked atomic.Int32
	b.answerAuth(t, func(ch *fetch.AuthChallenge) *[2]string {
		asked.Add(1)
		if ch.Scheme != "basic" || ch.Realm != "disco" {
			t.Errorf("the browser was asked for %s credentials for realm %q, want basic, disco", ch.Scheme, ch.Realm)
		}
		return give.Load()
	})
	if res := b.open(t, d.URL("/"), "error"); res.Status != http.StatusUnauthorized {
		t.Errorf("the page without credentials: %d, want 401", res.Status)
	}
	if asked.Load() == 0 {
		t.Error("the browser was not asked for credentials")
	}
	b.shot(t, "unauthorized")
	give.Store(&[2]string{user, password})
	if res := b.open(t, d.URL("/"), "list"); res.Status != http.StatusOK {
		t.Errorf("the page with the password: %d, want 200", res.Status)
	}
	b.shot(t, "authorized")
	if got := b.text(t, "#repositories"); !strings.Contains(got, "private/app") {
		t.Errorf("with the password, the list is:\n%s\nwant private/app", got)
	}
}

// answerAuth answers the browser's requests for credentials as its user would: with the
// user name and password answer returns, or by cancelling when it returns nil.
func (b *browser) answerAuth(t *testing.T, answer func(*fetch.AuthChallenge) *[2]string) {
	t.Helper()
	paused := chromedp.Events(b.ctx, fetch.RequestPaused)
	auths := chromedp.Events(b.ctx, fetch.AuthRequired)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			chromedp.Call(b.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	go func() {
		for ev, err := range auths {
			if err != nil {
				return
			}
			res := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			if creds := answer(ev.AuthChallenge); creds != nil {
				res = &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials,
					Username: creds[0], Password: creds[1]}
			}
			chromedp.Call(b.ctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: res})
		}
	}()
	yes := true
	if _, err := chromedp.Call(b.ctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &yes}); err != nil {
		t.Fatal(err)
	}
}

// lookChromium fails t unless Debian's chromium is installed.
func lookChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("chromium is not installed (%v): the browser tests need Debian's chromium package; scripts/test installs it", err)
	}
}

// browser is a headless Chromium of the test's own, with a fresh profile and none of
// the background traffic it would send to Google's hosts.
type browser struct {
	ctx   context.Context
	shots string
	n     int
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	shots := os.Getenv("DISCO_E2E_ARTIFACTS")
	if shots == "" {
		shots = t.TempDir()
	}
	shots = filepath.Join(shots, strings.ReplaceAll(t.Name(), "/", "-"))
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(t.TempDir(), "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logs.Close()
		if t.Failed() {
			t.Logf("chromium's log %s:\n%s", logs.Name(), kubotest.Tail(logs.Name()))
		}
	})
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
		chromedp.CombinedOutput(logs),
	)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 5*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{ctx: ctx, shots: shots}
}

// open loads url and checks it is the page named page (its body's data-page).
func (b *browser) open(t *testing.T, url, page string) *network.Response {
	t.Helper()
	res, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	b.expectPage(t, page)
	return res
}

// click clicks the first element sel matches and waits for the page named page to load.
func (b *browser) click(t *testing.T, sel, page string) {
	t.Helper()
	res, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	if res.Status != http.StatusOK {
		t.Errorf("click %s: %s answered %d", sel, res.URL, res.Status)
	}
	b.expectPage(t, page)
}

// search types q into the search box, sends it, and waits for the page named page.
func (b *browser) search(t *testing.T, q, page string) {
	t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.SetValue(chromedp.CSS(`#search input[name="q"]`), q)); err != nil {
		t.Fatal(err)
	}
	b.click(t, `#search button`, page)
}

func (b *browser) expectPage(t *testing.T, page string) {
	t.Helper()
	got, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.CSS("body"), "data-page"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Value != page {
		text, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("main")))
		t.Fatalf("at %s: the %q page, want the %q page:\n%s", b.location(t), got.Value, page, text)
	}
}

func (b *browser) location(t *testing.T) string {
	t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// text returns the text of the first element sel matches, as the page shows it.
func (b *browser) text(t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("at %s: text of %s: %v", b.location(t), sel, err)
	}
	return strings.TrimSpace(s)
}

// shot saves a screenshot of the whole page.
func (b *browser) shot(t *testing.T, name string) {
	t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	b.n++
	p := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of %s: %s", b.location(t), p)
}

// labelledImage returns a random image whose config has labels and a history entry for
// each of history.
func labelledImage(t *testing.T, labels map[string]string, history ...string) v1.Image {
	t.Helper()
	img := randomImage(t, 1<<20, 2)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config.Labels = "linux", "amd64", labels
	for _, h := range history {
		cf.History = append(cf.History, v1.History{CreatedBy: h, Created: v1.Time{Time: time.Now().UTC().Truncate(time.Second)}})
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// platformLayer returns the manifest digest of the platform of architecture arch in the
// index of the OCI layout dir, and the digest of its first layer.
func platformLayer(t *testing.T, dir, arch string) (manifest, layer string) {
	t.Helper()
	var index v1.IndexManifest
	if err := json.Unmarshal(layoutBlob(t, dir, readIndexJSON(t, dir).Manifests[0]), &index); err != nil {
		t.Fatal(err)
	}
	for _, m := range index.Manifests {
		if m.Platform == nil || m.Platform.Architecture != arch {
			continue
		}
		var im v1.Manifest
		if err := json.Unmarshal(layoutBlob(t, dir, m), &im); err != nil {
			t.Fatal(err)
		}
		return m.Digest.String(), im.Layers[0].Digest.String()
	}
	t.Fatalf("layout %s has no %s platform", dir, arch)
	return "", ""
}

func shortHex(d string) string { return strings.TrimPrefix(d, "sha256:")[:12] }

func encodeBasic(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}
