package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/kubotest"
)

// TestOriginalConfig starts Disco with the original Disco's default configuration file,
// copied as it is (testdata/original-config.yaml is forta-network/disco's
// config/default-config.yaml), against a Kubo daemon at the URL it names,
// http://localhost:5001, and goes through the original README's walkthrough with docker:
// push an image, find its CID through its digest repository, pull it by CID. Only
// environment variables keep the registry and its debug server on loopback.
func TestOriginalConfig(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:5001")
	if err != nil {
		t.Fatalf("port 5001, where the original's configuration expects a Kubo daemon, is taken (%v): free it and run the test again", err)
	}
	l.Close()
	k := kubotest.New(t)
	k.Run("config", "profile", "apply", "unixfs-v1-2025")
	k.SetAPIPort(5001)
	k.Start()
	debug := fmt.Sprintf("127.0.0.1:%d", kubotest.FreePorts(t, 1)[0])
	d := startDisco(t, discoOptions{File: "testdata/original-config.yaml",
		Env: []string{"REGISTRY_HTTP_ADDR=127.0.0.1:5000", "REGISTRY_HTTP_DEBUG_ADDR=" + debug}})
	if log := d.logFrom(0); !strings.Contains(log, k.ID) {
		t.Errorf("Disco's log does not name the daemon's peer ID %s as its node:\n%s", k.ID, d.logTail())
	}

	dk := needDocker(t)
	ref := d.Host + "/my-image"
	imageID := dk.importRandom(t, ref, 1<<20)
	digest := dockerPush(t, dk, ref)
	c := cidOf(t, d, digest)
	dk.run(t, "rmi", "-f", ref)
	dockerPull(t, dk, d.Host+"/"+c, digest, imageID)

	// The same image gets the same CID over the daemon as on the embedded node.
	img := randomImage(t, 3<<20, 2)
	e := startDisco(t, discoOptions{})
	h := pushImage(t, d, "same/image", "v1", img)
	pushImage(t, e, "same/image", "v1", img)
	if over, embedded := cidOf(t, d, h.String()), cidOf(t, e, h.String()); over != embedded {
		t.Errorf("the same image: CID %s over the daemon, %s on the embedded node", over, embedded)
	}

	// What Disco pushed is in the daemon's MFS, at the original's paths.
	if out := k.Run("files", "ls", "/docker/registry/v2/repositories"); !strings.Contains(out, c) {
		t.Errorf("ipfs files ls on the daemon lists %q, without the CID repository %s", out, c)
	}
}

// blobsOn returns the hex digests of the blobs whose data a Kubo daemon's MFS holds.
func blobsOn(t *testing.T, k *kubotest.Daemon) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	const dir = "/docker/registry/v2/blobs/sha256"
	for _, prefix := range strings.Fields(k.Run("files", "ls", dir)) {
		for _, hex := range strings.Fields(k.Run("files", "ls", dir+"/"+prefix)) {
			out[hex] = true
		}
	}
	return out
}

// TestTwoDaemons runs Disco over two Kubo daemons, peered: blobs are spread over both,
// and every image pulls. With one daemon killed, what it holds gets 503 UNAVAILABLE at
// once and what the other holds is served; once it is back, all is served again, with no
// restart of Disco.
func TestTwoDaemons(t *testing.T) {
	t.Parallel()
	a, b := kubotest.New(t), kubotest.New(t)
	for _, k := range []*kubotest.Daemon{a, b} {
		k.Run("config", "profile", "apply", "unixfs-v1-2025")
	}
	a.Start(b.PeerAddr())
	b.Start(a.PeerAddr())
	d := startDisco(t, discoOptions{YAML: fmt.Sprintf("storage: {ipfs: {router: {nodes: [{url: %s}, {url: %s}]}}}", a.APIURL(), b.APIURL())})

	type pushed struct {
		ref    string
		digest string
	}
	var images []pushed
	// Push until each daemon holds a repository of the images (it takes 2 or 3 images
	// but for bad luck), and 6 at least.
	reposOn := func(k *kubotest.Daemon) int {
		const repos = "/docker/registry/v2/repositories/e2e/two"
		n := 0
		names, _ := k.Try("files", "ls", repos) // none yet, maybe
		for _, repo := range strings.Fields(names) {
			if strings.Contains(k.Run("files", "ls", repos+"/"+repo), "_manifests") {
				n++
			}
		}
		return n
	}
	for i := 0; i < 6 || (i < 30 && (reposOn(a) == 0 || reposOn(b) == 0)); i++ {
		img := randomImage(t, 256<<10, 2)
		repo := fmt.Sprintf("e2e/two/app%d", i)
		h := pushImage(t, d, repo, "v1", img)
		images = append(images, pushed{repo + ":v1", h.String()})
		checkImage(t, d, repo+":v1", img)
		checkImage(t, d, cidOf(t, d, h.String())+":latest", img)
	}
	onA, onB := blobsOn(t, a), blobsOn(t, b)
	t.Logf("blobs on the first daemon: %d, on the second: %d", len(onA), len(onB))
	if len(onA) < 3 || len(onB) < 3 {
		t.Fatalf("blobs are not spread: %d on one daemon, %d on the other", len(onA), len(onB))
	}
	for hex := range onA {
		if onB[hex] {
			t.Errorf("blob %s is on both daemons", hex)
		}
	}
	// A layer or config of the daemon's, served from a repository of the same daemon's:
	// with the other daemon down, the repository's links must be reachable too.
	servedFrom := func(k *kubotest.Daemon, set map[string]bool) string {
		const repos = "/docker/registry/v2/repositories/e2e/two"
		for _, repo := range strings.Fields(k.Run("files", "ls", repos)) {
			if !strings.Contains(k.Run("files", "ls", repos+"/"+repo), "_manifests") {
				continue
			}
			for hex := range set {
				u := d.URL("/v2/e2e/two/" + repo + "/blobs/sha256:" + hex)
				if res := send(t, http.MethodHead, u, nil); res.status == http.StatusOK {
					return u
				}
			}
		}
		t.Fatal("no repository of the daemon's serves a blob of the daemon's")
		return ""
	}
	downURL, upURL := servedFrom(a, onA), servedFrom(b, onB)

	a.Kill()
	start := time.Now()
	res := send(t, http.MethodGet, downURL, nil)
	if r := res.reply(); r.status != http.StatusServiceUnavailable || r.code != "UNAVAILABLE" {
		t.Errorf("a blob on the killed daemon: %d %q, want 503 UNAVAILABLE; body %q", r.status, r.code, res.body)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("a blob on the killed daemon took %s to be refused", took)
	}
	if res := send(t, http.MethodGet, upURL, nil); res.status != http.StatusOK {
		t.Errorf("a blob on the daemon that is up, with the other down: %d %s", res.status, res.body)
	}
	// The catalog lists repositories on both: it cannot be whole, and says so.
	if r := send(t, http.MethodGet, d.URL("/v2/_catalog"), nil).reply(); r.status != http.StatusOK && r.status != http.StatusServiceUnavailable {
		t.Errorf("the catalog with a daemon down: %d %q, want 200 or 503", r.status, r.code)
	}

	a.Start(b.PeerAddr())
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		res := send(t, http.MethodGet, downURL, nil)
		if res.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon is back, and its blob is still not served: %d %.300s", res.status, res.body)
		}
	}
	for _, img := range images {
		if got := manifestDigest(t, d, strings.TrimSuffix(img.ref, ":v1"), "v1"); got != img.digest {
			t.Errorf("%s after the daemon came back: %s, want %s", img.ref, got, img.digest)
		}
	}
}
