package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The reliability suite (TestReliability*) runs what issue 10 asks of Disco against real
// disco processes: pushes cut by kill -9, concurrent pushers, hostile CID repositories, bad
// input, stalled clients and a full disk. Each test prints its figures on one line,
//
//	reliability: kill -9: 6 rounds, 72 acknowledged, 36 cut off, 580 pulls, 0 lost, 0 corrupted, 0 5xx
//
// and fails when anything lost, corrupted or answered 5xx is not 0. In CI each runs a few
// bounded rounds; with -soak, each runs its rounds again and again for that long
// (scripts/soak).

var soak = flag.Duration("soak", 0, "run each reliability test's rounds for this long instead of its CI count (see scripts/soak)")

// rounds runs round n times, or with -soak until the soak time is over, and returns how
// many rounds ran. round gets the round's number and returns false to stop early.
func rounds(n int, round func(i int) bool) int {
	deadline := time.Now().Add(*soak)
	for i := 0; ; i++ {
		more := i < n
		if *soak > 0 {
			more = time.Now().Before(deadline)
		}
		if !more {
			return i
		}
		if !round(i) {
			return i + 1
		}
	}
}

// figures prints one line of the suite's figures, on stdout so that a CI log shows it
// as it is, and in the test's log.
func figures(t *testing.T, format string, args ...any) {
	t.Helper()
	line := "reliability: " + fmt.Sprintf(format, args...)
	fmt.Println(line)
	t.Log(line)
}

// counting is an http.RoundTripper that counts the answers with a 5xx status, and keeps
// the first few of them to show.
type counting struct {
	rt    http.RoundTripper
	n     atomic.Int64
	mu    sync.Mutex
	first []string
}

func newCounting() *counting { return &counting{rt: remote.DefaultTransport} }

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := c.rt.RoundTrip(r)
	if err == nil && res.StatusCode >= 500 {
		c.n.Add(1)
		// Keep the body for the log, and give the client the same bytes.
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(b))
		c.mu.Lock()
		if len(c.first) < 5 {
			c.first = append(c.first, fmt.Sprintf("%s %s: %d %s", r.Method, r.URL.Path, res.StatusCode, b))
		}
		c.mu.Unlock()
	}
	return res, err
}

// check fails t if any answer was a 5xx.
func (c *counting) check(t *testing.T) {
	t.Helper()
	if n := c.n.Load(); n > 0 {
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Errorf("%d answers with a 5xx status, the first:\n%s", n, strings.Join(c.first, "\n"))
	}
}

// newImage returns an OCI image of layers random layers of size bytes each, without a
// testing.T: pushers make them in their own goroutines.
func newImage(size int64, layers int) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for range layers {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// pushTo pushes img to ref (host/repo:tag) with go-containerregistry, through rt.
func pushTo(ctx context.Context, rt http.RoundTripper, ref string, img v1.Image, opts ...remote.Option) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(r, img, append([]remote.Option{remote.WithContext(ctx), remote.WithTransport(rt)}, opts...)...)
}

// noRetry has go-containerregistry give up at the first error: it retries 5xx answers
// with Distribution's UNKNOWN code, which a test that expects them need not wait for.
var noRetry = remote.WithRetryPredicate(func(error) bool { return false })

// outcome is how an image pulled.
type outcome int

const (
	pulled    outcome = iota // byte for byte as pushed
	lost                     // not there, or not all of it
	corrupted                // there, but with other bytes than pushed
)

// pullCheck pulls ref (host/repo:tag, host/repo@digest) through rt, reading every
// blob, and says whether it is the image want with its bytes as pushed. err says what
// went wrong.
func pullCheck(ctx context.Context, rt http.RoundTripper, ref string, want v1.Hash) (outcome, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return lost, err
	}
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithTransport(rt))
	if err != nil {
		return lost, err
	}
	// remote.Get hashes the manifest it read: a wrong digest is other bytes.
	if desc.Digest != want {
		return corrupted, fmt.Errorf("%s: manifest %s, want %s", ref, desc.Digest, want)
	}
	img, err := desc.Image()
	if err != nil {
		return corrupted, err
	}
	m, err := img.Manifest()
	if err != nil {
		return corrupted, err
	}
	for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if o, err := blobCheck(ctx, rt, r.Context(), b); o != pulled {
			return o, err
		}
	}
	return pulled, nil
}

// blobCheck fetches the blob b of repo and says whether it holds the bytes of b.
func blobCheck(ctx context.Context, rt http.RoundTripper, repo name.Repository, b v1.Descriptor) (outcome, error) {
	u := fmt.Sprintf("http://%s/v2/%s/blobs/%s", repo.RegistryStr(), repo.RepositoryStr(), b.Digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return lost, err
	}
	res, err := rt.RoundTrip(req)
	if err != nil {
		return lost, fmt.Errorf("GET %s: %w", u, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return lost, fmt.Errorf("GET %s: %s", u, res.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, res.Body)
	if err != nil {
		return lost, fmt.Errorf("GET %s: %d bytes, then %w", u, n, err)
	}
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != b.Digest.String() || n != b.Size {
		return corrupted, fmt.Errorf("GET %s: %d bytes with digest %s, want %d bytes", u, n, got, b.Size)
	}
	return pulled, nil
}

// tally counts the outcomes of pulls.
type tally struct {
	mu                      sync.Mutex
	pulls, lost, corrupted  int
	firstLost, firstCorrupt error
}

func (y *tally) add(o outcome, err error) {
	y.mu.Lock()
	defer y.mu.Unlock()
	y.pulls++
	switch o {
	case lost:
		y.lost++
		if y.firstLost == nil {
			y.firstLost = err
		}
	case corrupted:
		y.corrupted++
		if y.firstCorrupt == nil {
			y.firstCorrupt = err
		}
	}
}

func (y *tally) check(t *testing.T) {
	t.Helper()
	if y.lost > 0 {
		t.Errorf("%d of %d pulls lost, the first: %v", y.lost, y.pulls, y.firstLost)
	}
	if y.corrupted > 0 {
		t.Errorf("%d of %d pulls corrupted, the first: %v", y.corrupted, y.pulls, y.firstCorrupt)
	}
}

// memory is a process's resident set, now (VmRSS) and at its peak (VmHWM), in MiB.
type memory struct{ rss, peak float64 }

// memoryOf reads the memory of process pid from /proc.
func memoryOf(t *testing.T, pid int) memory {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("memory of PID %d: %v", pid, err)
	}
	var m memory
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kib, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			m.rss = kib / 1024
		case "VmHWM":
			m.peak = kib / 1024
		}
	}
	if m.rss == 0 {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	return m
}

// layerBytes returns the bytes of a layer as pushed.
func layerBytes(l v1.Layer) ([]byte, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// uploadChunked uploads the blob b to repo on host in PATCHes of chunk bytes.
func uploadChunked(ctx context.Context, c *http.Client, host, repo string, b []byte, chunk int) error {
	loc, err := do(ctx, c, http.MethodPost, "http://"+host+"/v2/"+repo+"/blobs/uploads/", nil, http.StatusAccepted)
	if err != nil {
		return err
	}
	for off := 0; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		loc, err = do(ctx, c, http.MethodPatch, loc, b[off:end], http.StatusAccepted,
			"Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("%d-%d", off, end-1))
		if err != nil {
			return err
		}
	}
	u, err := url.Parse(loc)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", fmt.Sprintf("sha256:%x", sha256.Sum256(b)))
	u.RawQuery = q.Encode()
	_, err = do(ctx, c, http.MethodPut, u.String(), nil, http.StatusCreated)
	return err
}

// do sends a request, which must be answered want, and returns the answer's Location,
// resolved against the request's URL. header holds pairs of names and values.
func do(ctx context.Context, c *http.Client, method, u string, body []byte, want int, header ...string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode != want {
		return "", fmt.Errorf("%s %s: %s %s, want %d", method, u, res.Status, b, want)
	}
	loc, err := req.URL.Parse(res.Header.Get("Location"))
	if err != nil {
		return "", err
	}
	return loc.String(), nil
}

// pullByCID pulls p by the CID it was filed under: the tag of its digest repository
// other than latest, then that CID repository's latest. A push acknowledged but not
// filed is lost.
func pullByCID(ctx context.Context, rt http.RoundTripper, p pushedImage) (outcome, error) {
	host, _, _ := strings.Cut(p.ref, "/")
	c := &http.Client{Transport: rt}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/"+p.digest.Hex+"/tags/list", nil)
	if err != nil {
		return lost, err
	}
	res, err := c.Do(req)
	if err != nil {
		return lost, err
	}
	defer res.Body.Close()
	var list struct{ Tags []string }
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&list) != nil {
		return lost, fmt.Errorf("%s: tags of its digest repository: %s", p.ref, res.Status)
	}
	for _, tag := range list.Tags {
		if tag != "latest" {
			return pullCheck(ctx, rt, host+"/"+tag+":latest", p.digest)
		}
	}
	return lost, fmt.Errorf("%s: its digest repository has tags %q, no CID", p.ref, list.Tags)
}
