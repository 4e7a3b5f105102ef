package mirror_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/sirupsen/logrus"

	"github.com/discoregistry/disco/internal/disctest"
	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/mirror"
)

// TestCredentialsStay: the upstream's credentials go with a mirror's requests to the
// upstream and nowhere else. Mirror A has them; B, a mirror of the same upstream without
// them, and C, a plain Disco, get the image A mirrored from A, over IPFS. Neither the
// password nor the Authorization header made of it is in what B and C asked the
// upstream, in what A answers its peers, in any block A holds or any file it wrote, in
// its logs, or in what the CDN the upstream redirects blobs to got.
func TestCredentialsStay(t *testing.T) {
	const user, password = "puller", "pw-Xk29vQ7rTj"
	secrets := []string{
		password,
		user + ":" + password,
		base64.StdEncoding.EncodeToString([]byte(user + ":" + password)),
	}
	leaks := func(b []byte) string {
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				return s
			}
		}
		return ""
	}

	u := newUpstream(t, user, password)
	var cdnMu sync.Mutex
	var cdnGets, cdnAuthorized int
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cdnMu.Lock()
		cdnGets++
		if r.Header.Get("Authorization") != "" {
			cdnAuthorized++
		}
		cdnMu.Unlock()
		u.reg.ServeHTTP(w, r) // what the upstream keeps, without asking for credentials
	}))
	t.Cleanup(cdn.Close)
	img := randomImage(t, 2<<20, 2)
	h := u.push(t, "up/app:v1", img)
	u.mu.Lock()
	u.blobsAt = cdn.URL
	u.mu.Unlock()

	// A lists B and C as peers: it serves them, and may fetch for B. B lists no peers, so
	// it fetches nothing for A: only A ever goes to the upstream.
	b := disctest.Start(t, fmt.Sprintf("proxy: {remoteurl: %s}", u.URL))
	c := disctest.Start(t, "")
	var slogged lockedBuffer
	homeA := t.TempDir()
	debug := slog.New(slog.NewTextHandler(&slogged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := disctest.StartLogged(t, homeA, fmt.Sprintf("log: {level: debug}\nproxy: {remoteurl: %s, username: %s, password: %s}", u.URL, user, password), debug, b, c)
	var logged lockedBuffer // Distribution's log, at debug level
	logrus.SetOutput(&logged)
	level := logrus.GetLevel()
	logrus.SetLevel(logrus.DebugLevel)
	t.Cleanup(func() {
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(level)
	})

	if got := disctest.PullAll(t, a.Ref(t, "up/app:v1")); got != h {
		t.Fatalf("pulled through A as %s, want %s", got, h)
	}
	cidA := waitCID(t, a, h)
	u.mu.Lock()
	before := len(u.requests)
	authorized := 0
	for _, r := range u.requests {
		if r.authorized {
			authorized++
		}
	}
	u.mu.Unlock()
	cdnMu.Lock()
	cdnBefore := cdnGets
	cdnMu.Unlock()
	if authorized == 0 || cdnBefore == 0 {
		t.Fatalf("A sent %d requests with credentials to the upstream and %d to its CDN, want some of each", authorized, cdnBefore)
	}

	// (a) B, with no credentials, pulls by digest what A mirrored; C pulls it by CID.
	if got := disctest.PullAll(t, b.Ref(t, "up/app@"+h.String())); got != h {
		t.Errorf("pulled through B as %s, want %s", got, h)
	}
	if got := disctest.PullAll(t, c.Ref(t, cidA+":latest")); got != h {
		t.Errorf("pulled %s through C as %s, want %s", cidA, got, h)
	}
	if got, want := waitCID(t, b, h), cidA; got != want {
		t.Errorf("B published the image as %s, A as %s", got, want)
	}
	if got := fetches(t, b, "peer"); got != 4 {
		t.Errorf("B fetched %v manifests and blobs from A, want 4", got)
	}
	if got := fetches(t, b, "upstream"); got != 0 {
		t.Errorf("B fetched %v manifests and blobs from the upstream, want none", got)
	}
	u.mu.Lock()
	for _, r := range u.requests[before:] {
		if r.authorized || strings.Contains(r.path, "/blobs/") {
			t.Errorf("once A had mirrored the image, the upstream got %s %s (with credentials: %v), want no blob request and none with credentials", r.method, r.path, r.authorized)
		}
	}
	for d, n := range u.blobGets {
		if n != 1 {
			t.Errorf("the upstream sent blob %s %d times, want once", d, n)
		}
	}
	u.mu.Unlock()
	cdnMu.Lock()
	if cdnGets != cdnBefore || cdnAuthorized != 0 {
		t.Errorf("the CDN got %d blob requests, %d once A had mirrored the image, %d with an Authorization header; want none after, none with", cdnGets, cdnGets-cdnBefore, cdnAuthorized)
	}
	cdnMu.Unlock()

	// (c) What A answers a peer, as B asks it: "have" and "fetch" of every part of the
	// image, and fetches that fail at the upstream, whose errors A passes on.
	hostB := b.Node.(ipfs.Host).Host()
	idA := a.Node.(ipfs.Host).Host().ID()
	proto := mirror.ProtocolFor(u.URL)
	ask := func(req string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := hostB.NewStream(ctx, idA, proto)
		if err != nil {
			t.Fatalf("B asks A: %v", err)
		}
		defer s.Close()
		s.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(s, req+"\n"); err != nil {
			t.Fatal(err)
		}
		s.CloseWrite()
		got, err := io.ReadAll(io.LimitReader(s, 1<<20))
		if err != nil {
			t.Fatalf("A's answer to %s: %v", req, err)
		}
		if secret := leaks(got); secret != "" {
			t.Errorf("A answered %s with %q, which holds %q", req, got, secret)
		}
		return string(got)
	}
	parts := map[string]bool{h.String(): true} // digest: is a manifest
	for _, d := range blobDigests(t, img) {
		parts[d] = false
	}
	for d, isManifest := range parts {
		for _, op := range []string{"have", "fetch"} {
			got := ask(fmt.Sprintf(`{"op":%q,"repository":"up/app","digest":%q,"manifest":%v}`, op, d, isManifest))
			if !strings.Contains(got, `"cid":"`) {
				t.Errorf("A answered %s of %s with %q, want its CID", op, d, got)
			}
		}
	}
	missing := "sha256:" + strings.Repeat("0", 64)
	for _, req := range []string{
		fmt.Sprintf(`{"op":"fetch","repository":"up/app","digest":%q}`, missing),
		fmt.Sprintf(`{"op":"fetch","repository":"up/app","digest":%q,"manifest":true}`, missing),
		fmt.Sprintf(`{"op":"fetch","repository":"up/nothere","digest":%q,"manifest":true}`, missing),
		`{"op":"fetch","repository":"up/app","digest":"nonsense"}`,
	} {
		if got := ask(req); !strings.Contains(got, `"error":"`) {
			t.Errorf("A answered %s with %q, want an error", req, got)
		}
	}

	// (b) Every block reachable from what A published and from its MFS root, through
	// its node, then every file in A's home: its IPFS repository (blocks and datastore)
	// and its uploads directory (fetch times, upload state).
	ctx := context.Background()
	root, err := a.Node.Stat(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	published, err := cid.Decode(cidA)
	if err != nil {
		t.Fatal(err)
	}
	blocks := 0
	seen := map[cid.Cid]bool{}
	todo := []cid.Cid{published, root.CID}
	for len(todo) > 0 {
		c := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[c] {
			continue
		}
		seen[c] = true
		blocks++
		links, err := a.Node.Links(ctx, c)
		if err != nil {
			t.Fatalf("links of %s: %v", c, err)
		}
		for _, l := range links {
			if s := leaks([]byte(l.Name)); s != "" {
				t.Errorf("block %s links %q, which holds %q", c, l.Name, s)
			}
			todo = append(todo, l.CID)
		}
		if len(links) > 0 {
			continue
		}
		r, err := a.Node.Read(ctx, "/ipfs/"+c.String(), 0)
		if errors.Is(err, ipfs.ErrIsDir) {
			continue // an empty directory
		}
		if err != nil {
			t.Fatalf("read %s: %v", c, err)
		}
		content, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatalf("read %s: %v", c, err)
		}
		if s := leaks(content); s != "" {
			t.Errorf("block %s holds %q", c, s)
		}
	}
	if blocks < 10 {
		t.Errorf("walked %d blocks from A's MFS root %s and %s, want the whole registry", blocks, root.CID, cidA)
	}
	files := 0
	err = filepath.WalkDir(homeA, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		content, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if s := leaks(content); s != "" {
			t.Errorf("A wrote %q into %s", s, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("walked %d blocks, %d files of A's home", blocks, files)

	// Logs, of A and of Distribution.
	if !strings.Contains(slogged.String(), "mirror of "+u.URL) {
		t.Errorf("A's log has no line about its mirror, so it was not captured:\n%s", slogged.String())
	}
	for name, l := range map[string]*lockedBuffer{"A's log": &slogged, "Distribution's log": &logged} {
		sc := bufio.NewScanner(strings.NewReader(l.String()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if s := leaks(sc.Bytes()); s != "" {
				t.Errorf("%s has %q: %s", name, s, sc.Text())
			}
		}
	}
}

// TestURLCredentialsRefused: a mirror refuses an upstream URL with credentials in it,
// which it would show in messages and hash into the name of its peers' protocol, and does
// not repeat them in its error.
func TestURLCredentialsRefused(t *testing.T) {
	for _, remote := range []string{"https://puller:pw-Zq81x@registry.example.com", "https://puller:pw Zq81x@registry.example.com"} {
		m, err := mirror.New(mirror.Options{RemoteURL: remote})
		if err == nil {
			m.Close()
			t.Errorf("a mirror of %s started", remote)
		} else if strings.Contains(err.Error(), "Zq81x") {
			t.Errorf("a mirror of %s: the error repeats the password: %v", remote, err)
		}
	}
}

// lockedBuffer is a buffer that logs write to from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
