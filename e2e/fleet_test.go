package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/disctest"
	"github.com/discoregistry/disco/internal/kubotest"
)

// startRedis runs Debian's redis-server on a free loopback port, with nothing saved to
// disk, until the test ends, and returns its address.
func startRedis(t *testing.T) string {
	t.Helper()
	bin := lookTool(t, "redis-server")
	port := kubotest.FreePorts(t, 1)[0]
	dir := t.TempDir()
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := (&net.Dialer{}).Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server not listening on %s after 30s", addr)
		}
	}
}

// fleet starts two Discos that share everything but their process: one Kubo daemon, a
// filesystem cache, the uploads directory, http.secret and a Redis blob descriptor
// cache, as two Discos behind one load balancer run.
func fleet(t *testing.T) (*Disco, *Disco) {
	t.Helper()
	k := kubotest.New(t)
	k.Run("config", "profile", "apply", "unixfs-v1-2025")
	k.Start()
	shared := t.TempDir()
	conf := fmt.Sprintf(`
http: {secret: a-secret-both-discos-share}
redis: {addrs: [%s]}
storage:
  cache: {blobdescriptor: redis}
  ipfs:
    router: {nodes: [{url: %s}]}
    cache: {filesystem: {rootdirectory: %s/cache}}
    uploads: %s/uploads
`, startRedis(t), k.APIURL(), shared, shared)
	return startDisco(t, discoOptions{YAML: conf}), startDisco(t, discoOptions{YAML: conf})
}

// TestBehindOneAddress pushes through two Discos in turn, request by request, an upload's
// PATCHes landing on both, and pulls each tag through the other at once.
func TestBehindOneAddress(t *testing.T) {
	t.Parallel()
	a, b := fleet(t)
	ds := []*Disco{a, b}
	blob := randomBytes(t, 3<<20+17)
	loc := startUpload(t, a, "e2e/fleet")
	const part = 1<<20 + 3
	for i, off := 0, 0; off < len(blob); i, off = i+1, off+part {
		end := min(off+part, len(blob))
		// The same upload location, on the other Disco.
		res := send(t, http.MethodPatch, onDisco(t, loc, ds[(i+1)%2]), blob[off:end],
			"Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("%d-%d", off, end-1))
		if res.status != http.StatusAccepted {
			t.Fatalf("PATCH %d on Disco %d: %d %s", i, (i+1)%2, res.status, res.body)
		}
		loc = location(t, ds[(i+1)%2], res)
	}
	res := send(t, http.MethodPut, withDigest(onDisco(t, loc, a), disctest.SHA256(blob)), nil)
	if res.status != http.StatusCreated {
		t.Fatalf("PUT on Disco 0: %d %s", res.status, res.body)
	}
	for i := range 4 {
		img := randomImage(t, 512<<10, 2)
		repo := fmt.Sprintf("e2e/fleet/app%d", i)
		h := pushImage(t, ds[i%2], repo, "v1", img)
		checkImage(t, ds[(i+1)%2], repo+":v1", img)
		checkImage(t, ds[(i+1)%2], cidOf(t, ds[(i+1)%2], h.String())+":latest", img)
	}
	if res := send(t, http.MethodGet, b.URL("/v2/e2e/fleet/blobs/"+disctest.SHA256(blob)), nil); res.status != http.StatusOK || len(res.body) != len(blob) {
		t.Errorf("the blob uploaded through both, from Disco 1: %d, %d bytes", res.status, len(res.body))
	}
}

// TestBehindOneAddressConformance runs the OCI conformance suite against a round-robin
// front over two Discos: every request goes to the other Disco than the one before.
func TestBehindOneAddressConformance(t *testing.T) {
	t.Parallel()
	a, b := fleet(t)
	var proxies []*httputil.ReverseProxy
	for _, d := range []*Disco{a, b} {
		u, err := url.Parse(d.URL("/"))
		if err != nil {
			t.Fatal(err)
		}
		proxies = append(proxies, httputil.NewSingleHostReverseProxy(u))
	}
	var n atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxies[n.Add(1)%2].ServeHTTP(w, r)
	}))
	defer front.Close()
	runConformance(t, front.Listener.Addr().String())
	if n.Load() < 100 {
		t.Errorf("the front sent %d requests, want the suite's many", n.Load())
	}
}

// onDisco returns the upload location loc, absolute, on the Disco d.
func onDisco(t *testing.T, loc string, d *Disco) string {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	u.Scheme, u.Host = "http", d.Host
	return u.String()
}
