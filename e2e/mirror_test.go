package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Disco as a pull-through mirror (Distribution's proxy section) of Distribution's own
// registry, v3.1.2, on loopback.

// mirrorYAML is the configuration of a Disco that mirrors u, with the credentials if set.
func mirrorYAML(u *upstream, user, password string) string {
	creds := ""
	if user != "" {
		creds = fmt.Sprintf(", username: %s, password: %s", user, password)
	}
	return fmt.Sprintf("proxy: {remoteurl: http://%s%s}", u.Host, creds)
}

// cranePull pulls ref from a plain-HTTP registry into a new OCI layout with crane (a
// whole index, if ref names one) and returns the layout's directory.
func cranePull(t *testing.T, ref string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "crane")
	out, err := exec.Command(craneTool.Path(t), "pull", "--insecure", "--format", "oci", ref, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("crane pull %s: %v\n%s", ref, err, out)
	}
	return dir
}

// waitPublished waits for d to file the manifest digest under its digest and CID, which
// a mirror does in the background once it holds the whole image, and returns the CID.
func waitPublished(t *testing.T, d *Disco, digest string) string {
	t.Helper()
	hex := strings.TrimPrefix(digest, "sha256:")
	deadline := time.Now().Add(time.Minute)
	for {
		res := send(t, http.MethodGet, d.URL("/v2/"+hex+"/tags/list"), nil)
		var list struct{ Tags []string }
		if res.status == http.StatusOK && json.Unmarshal(res.body, &list) == nil && len(list.Tags) == 2 {
			return cidOf(t, d, digest)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not publish %s within a minute: GET /v2/%s/tags/list: %d %s", d.Host, digest, hex, res.status, res.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMirror mirrors an upstream registry, without and with credentials, and pulls
// through Disco with skopeo, crane and docker (its registry-mirrors setting): a single
// image and a multi-arch index, with their digests; the mirrored images get the CIDs a
// push of them to a plain Disco gives; with the upstream stopped, they still pull, and an
// image that was not mirrored gets a clear error at once.
func TestMirror(t *testing.T) {
	t.Parallel()
	lookTool(t, "skopeo")
	lookTool(t, "dockerd")
	for _, tc := range []struct{ name, user, password string }{
		{"anonymous", "", ""},
		{"htpasswd", "puller", "pull-s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := startUpstream(t, upstreamOptions{User: tc.user, Password: tc.password})
			var destCreds []string
			if tc.user != "" {
				destCreds = []string{"--dest-creds", tc.user + ":" + tc.password}
			}
			img := randomImage(t, 2<<20, 2)
			digest := imageDigest(t, img).String()
			single := layoutOf(t, img)
			skopeoPush(t, single, u.Host+"/up/app:v1", destCreds...)
			dir, indexDigest, all := writeIndexLayout(t, "v1",
				v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
			skopeoPush(t, "oci:"+dir+":v1", u.Host+"/up/multi:v1", append(destCreds, "--all")...)
			skopeoPush(t, layoutOf(t, randomImage(t, 1<<20, 1)), u.Host+"/up/never:v1", destCreds...)

			m := startDisco(t, discoOptions{YAML: mirrorYAML(u, tc.user, tc.password)})
			dk := ownDocker(t, fmt.Sprintf(`{"registry-mirrors": ["http://%s"], "insecure-registries": [%q]}`, m.Host, m.Host))
			// docker pulls an image of Docker Hub's from the mirror: library/<name> upstream.
			pushed := u.Host + "/library/mirrored:v1"
			imageID := dk.importRandom(t, pushed, 3<<20)
			if tc.user != "" {
				dk.run(t, "login", "--username", tc.user, "--password", tc.password, u.Host)
			}
			dockerDigest := dockerPush(t, dk, pushed)
			dk.run(t, "rmi", pushed)

			// Through the mirror.
			checkLayout(t, pullLayout(t, m.Host+"/up/app:v1", false), digest)
			if got := checkLayout(t, cranePull(t, m.Host+"/up/multi:v1"), indexDigest); !sameSet(got, all) {
				t.Errorf("crane pulled %q through the mirror, want %q", got, all)
			}
			if got := checkLayout(t, pullLayout(t, m.Host+"/up/multi:v1", true), indexDigest); !sameSet(got, all) {
				t.Errorf("skopeo --all pulled %q through the mirror, want %q", got, all)
			}
			dockerPull(t, dk, "mirrored:v1", dockerDigest, imageID)

			// Published with the CIDs a push of the same images to a plain Disco gives.
			plain := startDisco(t, discoOptions{})
			skopeoPush(t, single, plain.Host+"/x/app:v1")
			skopeoPush(t, "oci:"+dir+":v1", plain.Host+"/x/multi:v1", "--all")
			for _, d := range []string{digest, indexDigest} {
				if got, want := waitPublished(t, m, d), cidOf(t, plain, d); got != want {
					t.Errorf("mirrored, %s has CID %s; pushed to a plain Disco, %s", d, got, want)
				}
			}
			waitPublished(t, m, dockerDigest)
			if _, err := trySkopeo(t, "copy", "--dest-tls-verify=false", single, "docker://"+m.Host+"/up/app:v2"); err == nil ||
				!strings.Contains(strings.ToLower(err.Error()), "unsupported") {
				t.Errorf("skopeo copy to the mirror: %v, want it refused as unsupported", err)
			}

			// The upstream stops: what was mirrored still pulls, the rest fails at once.
			u.Stop()
			checkLayout(t, pullLayout(t, m.Host+"/up/app:v1", false), digest)
			checkLayout(t, cranePull(t, m.Host+"/up/multi:v1"), indexDigest)
			dk.run(t, "rmi", "mirrored:v1")
			dockerPull(t, dk, "mirrored:v1", dockerDigest, imageID)
			start := time.Now()
			send(t, http.MethodGet, m.URL("/v2/up/never/manifests/v1"), nil, "Accept", manifestTypes).
				expect(t, reply{503, "UNAVAILABLE"})
			_, err := trySkopeo(t, "inspect", "--tls-verify=false", "docker://"+m.Host+"/up/never:v1")
			if err == nil || !strings.Contains(err.Error(), "503") {
				t.Errorf("skopeo inspect of an image not mirrored, upstream stopped: %v, want a 503", err)
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("with the upstream stopped, an image not mirrored failed after %s", took)
			}

			// A mirror stops as cleanly as any Disco.
			m.Stop()
			for line := range strings.Lines(m.logFrom(0)) {
				if strings.Contains(line, "level=ERROR") || strings.Contains(line, "scheduler") {
					t.Errorf("the mirror logged: %s", line)
				}
			}
		})
	}
}

// TestMirrorExpiry mirrors an image with proxy.ttl 2s. Disco restarts and, the ttl up,
// takes the image out of the registry and of the web page; the next pull fetches its
// manifest from the upstream again (the upstream's access log shows it sent twice) and
// publishes it again. Its blobs, which the registry still holds, are not sent again.
func TestMirrorExpiry(t *testing.T) {
	t.Parallel()
	lookTool(t, "skopeo")
	u := startUpstream(t, upstreamOptions{})
	img := randomImage(t, 1<<20, 2)
	digest := imageDigest(t, img).String()
	skopeoPush(t, layoutOf(t, img), u.Host+"/up/app:v1")
	m := startDisco(t, discoOptions{YAML: fmt.Sprintf("proxy: {remoteurl: http://%s, ttl: 2s}", u.Host)})
	search := m.URL("/ui/search?q=" + digest)
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s", what)
			}
		}
	}

	start := time.Now()
	checkLayout(t, pullLayout(t, m.Host+"/up/app:v1", false), digest)
	waitPublished(t, m, digest)
	if n := u.manifestGets()[digest]; n != 1 {
		t.Fatalf("the upstream sent the manifest %d times for one pull, want once", n)
	}
	wait("the web page lists up/app:v1", func() bool {
		return strings.Contains(string(send(t, http.MethodGet, search, nil).body), ">up/app:v1<")
	})

	// The fetch time outlives a restart.
	m.Stop()
	m.Restart()
	hex := strings.TrimPrefix(digest, "sha256:")
	wait("the digest repository removed", func() bool {
		return send(t, http.MethodGet, m.URL("/v2/"+hex+"/tags/list"), nil).status == http.StatusNotFound
	})
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("the image expired %s after its pull began, before its ttl of 2s", took)
	}
	wait("the web page no longer lists up/app:v1", func() bool {
		return strings.Contains(string(send(t, http.MethodGet, search, nil).body), `id="empty"`)
	})
	if !strings.Contains(m.logFrom(0), "mirror: expired") {
		t.Errorf("the mirror did not log the expiry")
	}

	checkLayout(t, pullLayout(t, m.Host+"/up/app:v1", false), digest)
	if n := u.manifestGets()[digest]; n != 2 {
		t.Errorf("the upstream sent the manifest %d times for a pull, its expiry and a pull, want twice", n)
	}
	waitPublished(t, m, digest)
	gets, _ := u.blobGets()
	for _, d := range blobsOf(t, img) {
		if gets[d] != 1 {
			t.Errorf("the upstream sent blob %s %d times, want once: the registry holds it still", d, gets[d])
		}
	}
}

// peeredMirrors returns n Discos that mirror u, each peered with all the others, not
// started.
func peeredMirrors(t *testing.T, u *upstream, n int, opts discoOptions) []*Disco {
	t.Helper()
	opts.YAML = mirrorYAML(u, "", "") + "\n" + opts.YAML
	var ds []*Disco
	for range n {
		ds = append(ds, newDisco(t, opts))
	}
	peer(ds...)
	return ds
}

// peer makes each of ds list all the others as peers, from its next start.
func peer(ds ...*Disco) {
	addrs := map[*Disco]string{}
	for _, d := range ds {
		addrs[d] = d.PeerAddr()
	}
	for _, d := range ds {
		var others []string
		for _, o := range ds {
			if o != d && !slices.Contains(d.opts.Peers, addrs[o]) {
				others = append(others, addrs[o])
			}
		}
		d.AddPeers(others...)
	}
}

// TestMirrorFetchedOnce pulls fresh images through two, then four mirrors of one upstream
// that are peers: one after another, then at once. The upstream's access log must show
// each blob and the manifest sent once, and every pull must give the image's digest.
func TestMirrorFetchedOnce(t *testing.T) {
	t.Parallel()
	lookTool(t, "skopeo")
	u := startUpstream(t, upstreamOptions{})
	ms := peeredMirrors(t, u, 2, discoOptions{})
	for _, m := range ms {
		m.Start()
	}
	// pull pulls a fresh image through the mirrors, at once or one after another, and
	// checks what the upstream sent.
	pull := func(t *testing.T, ms []*Disco, atOnce bool) {
		t.Helper()
		img := randomImage(t, 3<<20, 3)
		digest := imageDigest(t, img).String()
		repo := "up/" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
		skopeoPush(t, layoutOf(t, img), u.Host+"/"+repo+":v1")
		dirs := make([]string, len(ms))
		errs := make([]error, len(ms))
		var wg sync.WaitGroup
		for i, m := range ms {
			dirs[i] = filepath.Join(t.TempDir(), "pulled")
			wg.Go(func() {
				_, errs[i] = trySkopeo(t, "copy", "--preserve-digests", "--src-tls-verify=false",
					"docker://"+m.Host+"/"+repo+":v1", "oci:"+dirs[i])
			})
			if !atOnce {
				wg.Wait()
			}
		}
		wg.Wait()
		for i, m := range ms {
			if errs[i] != nil {
				t.Fatalf("pull through %s: %v", m.Host, errs[i])
			}
			checkLayout(t, dirs[i], digest)
			waitPublished(t, m, digest) // once every blob is there, the config too
		}
		gets, _ := u.blobGets()
		for _, d := range blobsOf(t, img) {
			if gets[d] != 1 {
				t.Errorf("the upstream sent blob %s %d times to %d mirrors, want once", d, gets[d], len(ms))
			}
		}
		if n := u.manifestGets()[digest]; n != 1 {
			t.Errorf("the upstream sent the manifest %d times to %d mirrors, want once: the others ask it for the tag's digest only", n, len(ms))
		}
	}
	t.Run("two one after another", func(t *testing.T) { pull(t, ms, false) })
	t.Run("two at once", func(t *testing.T) { pull(t, ms, true) })
	more := peeredMirrors(t, u, 2, discoOptions{})
	all := append(ms, more...)
	peer(all...)
	for _, m := range ms {
		m.Stop()
		m.Restart()
	}
	for _, m := range more {
		m.Start()
	}
	t.Run("four one after another", func(t *testing.T) { pull(t, all, false) })
	t.Run("four at once", func(t *testing.T) { pull(t, all, true) })
}

// blobsOf returns the digests of img's config and layers.
func blobsOf(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{m.Config.Digest.String()}
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	return out
}
