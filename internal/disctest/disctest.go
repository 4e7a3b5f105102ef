// Package disctest starts Discos inside a test process, each with its own embedded IPFS
// node, and offers the client-side helpers tests of them share.
package disctest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	yaml "go.yaml.in/yaml/v3"

	"github.com/discoregistry/disco/internal/app"
	"github.com/discoregistry/disco/internal/config"
	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/ipfs"
)

var quietLibrary sync.Once

// Disco is a Disco running in the test process, with its own embedded IPFS node.
type Disco struct {
	Host    string
	Node    ipfs.Node
	Metrics *prometheus.Registry
	Uploads string       // the local directory of uploads in progress
	Store   driver.Store // the registry's storage
	stop    func()
}

// Start starts a Disco with the extra YAML (under the top level) and IPFS peers.
func Start(t *testing.T, extra string, peers ...*Disco) *Disco {
	t.Helper()
	return StartIn(t, t.TempDir(), extra, peers...)
}

// StartIn starts a Disco whose HOME, which holds its IPFS node and uploads, is home: a
// Disco started again in the same home finds what the previous one held. It stops when
// the test or benchmark ends, or when Stop is called.
func StartIn(t testing.TB, home, extra string, peers ...*Disco) *Disco {
	t.Helper()
	return StartLogged(t, home, extra, nil, peers...)
}

// StartLogged starts a Disco as StartIn does, with Disco's own log lines going to log
// (nil discards them).
func StartLogged(t testing.TB, home, extra string, log *slog.Logger, peers ...*Disco) *Disco {
	t.Helper()
	quietLibrary.Do(func() { logrus.SetOutput(io.Discard) }) // Distribution's request logs
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var peerAddrs []string
	for _, p := range peers {
		id, err := p.Node.Identity(ctx)
		if err != nil {
			t.Fatal(err)
		}
		peerAddrs = append(peerAddrs, id.Addresses...)
	}
	conf := map[string]any{
		"log":     map[string]any{"level": "warn", "accesslog": map[string]any{"disabled": true}},
		"storage": map[string]any{"delete": map[string]any{"enabled": true}, "ipfs": map[string]any{"node": map[string]any{"swarm": []string{"/ip4/127.0.0.1/tcp/0"}, "peers": peerAddrs}}},
	}
	var more map[string]any
	if err := yaml.Unmarshal([]byte(extra), &more); err != nil {
		t.Fatalf("extra configuration: %v", err)
	}
	Merge(conf, more)
	b, err := yaml.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(b, func(k string) string {
		return map[string]string{"HOME": home, "DISCO_PORT": "0"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	metrics := prometheus.NewRegistry()
	a, err := app.Open(ctx, c, app.Options{Log: log, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Server.Serve(sctx, ln) }()
	d := &Disco{Host: ln.Addr().String(), Node: a.Node, Metrics: metrics, Uploads: c.IPFS.Uploads, Store: a.Store}
	d.stop = sync.OnceFunc(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		a.Close()
	})
	t.Cleanup(d.stop)
	return d
}

// Merge merges the YAML mapping src into dst: mappings recursively, other values replace.
func Merge(dst, src map[string]any) {
	for k, v := range src {
		sub, ok := v.(map[string]any)
		if old, isMap := dst[k].(map[string]any); ok && isMap {
			Merge(old, sub)
			continue
		}
		dst[k] = v
	}
}

// Stop stops the Disco and closes its node.
func (d *Disco) Stop() { d.stop() }

func (d *Disco) Ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(d.Host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (d *Disco) URL(p string) string { return "http://" + d.Host + p }

// push writes img to repo:tag and returns its manifest digest.
func (d *Disco) Push(t *testing.T, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(d.Ref(t, repoTag), img); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// cidOf returns the CID a Disco filed the manifest under, from the tags of its digest
// repository.
func (d *Disco) CIDOf(t *testing.T, h v1.Hash) string {
	t.Helper()
	var list struct{ Tags []string }
	GetJSON(t, d.URL("/v2/"+h.Hex+"/tags/list"), &list)
	for _, tag := range list.Tags {
		if tag != "latest" {
			return tag
		}
	}
	t.Fatalf("digest repository %s has tags %v, want latest and a CID", h.Hex, list.Tags)
	return ""
}

func GetJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// OCIError does a request and returns the status and the first OCI error code.
func OCIError(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body struct {
		Errors []struct{ Code string }
	}
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &body); err != nil || len(body.Errors) == 0 {
			t.Fatalf("%s %s: %s with body %q, want an OCI error body", method, url, resp.Status, b)
		}
		return resp.StatusCode, body.Errors[0].Code
	}
	return resp.StatusCode, ""
}

// PullAll pulls ref and reads every layer, checking digests.
func PullAll(t *testing.T, ref name.Reference) v1.Hash {
	t.Helper()
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed() // verifies the digest as it reads
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("pull %s: layer: %v", ref, err)
		}
		rc.Close()
	}
	h, _ := img.Digest()
	return h
}

// ReadTree reads every file of the IPFS directory at root, by path below it.
func ReadTree(t *testing.T, node ipfs.Node, root string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	var walk func(rel string)
	walk = func(rel string) {
		es, err := node.List(ctx, path.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			p := path.Join(rel, e.Name)
			if e.IsDir {
				walk(p)
				continue
			}
			r, err := node.Read(ctx, path.Join(root, p), 0)
			if err != nil {
				t.Fatal(err)
			}
			out[p], _ = io.ReadAll(r)
			r.Close()
		}
	}
	walk("")
	return out
}

// AddTree adds files given by path as a directory and returns its CID.
func AddTree(t *testing.T, node ipfs.Node, byPath map[string][]byte) cid.Cid {
	t.Helper()
	var dir func(prefix string) files.Directory
	dir = func(prefix string) files.Directory {
		entries := map[string]files.Node{}
		for p, b := range byPath {
			rest, ok := strings.CutPrefix(p, prefix)
			if !ok {
				continue
			}
			first, _, isDir := strings.Cut(rest, "/")
			if isDir {
				entries[first] = dir(prefix + first + "/")
			} else {
				entries[first] = files.NewBytesFile(b)
			}
		}
		return files.NewMapDirectory(entries)
	}
	c, err := node.Add(context.Background(), dir(""))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// AddBytes adds b as a file and returns its CID.
func AddBytes(t *testing.T, node ipfs.Node, b []byte) cid.Cid {
	t.Helper()
	c, err := node.Add(context.Background(), files.NewBytesFile(b))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type discoJSON struct {
	Blobs []blobCID `json:"blobs"`
}

type blobCID struct {
	Digest string `json:"digest"`
	CID    string `json:"cid"`
}

// SetBlobCID rewrites the disco.json of a repository tree to map digest hex to c.
func SetBlobCID(t *testing.T, repo map[string][]byte, hex string, c cid.Cid) {
	t.Helper()
	var dj discoJSON
	if err := json.Unmarshal(repo["disco.json"], &dj); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(dj.Blobs, func(b blobCID) bool { return b.Digest == hex })
	if i < 0 {
		t.Fatalf("disco.json does not list %s", hex)
	}
	dj.Blobs[i].CID = c.String()
	b, err := json.Marshal(dj)
	if err != nil {
		t.Fatal(err)
	}
	repo["disco.json"] = b
}

func SHA256(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// putBlob uploads b to repo in one request.
func (d *Disco) PutBlob(t *testing.T, repo string, b []byte) {
	t.Helper()
	loc := Request(t, http.MethodPost, d.URL("/v2/"+repo+"/blobs/uploads/"), nil, nil, http.StatusAccepted)
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	Request(t, http.MethodPut, d.abs(loc)+sep+"digest="+SHA256(b), b, nil, http.StatusCreated)
}

func RawSize(t *testing.T, idx interface{ RawManifest() ([]byte, error) }) int64 {
	b, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(b))
}

// PushChunked pushes img's blobs to repo in PATCH requests of chunk bytes, then its
// manifest under tag, the way a client that resumes uploads would.
func PushChunked(t *testing.T, d *Disco, repo, tag string, img v1.Image, chunk int) {
	t.Helper()
	cfg, _ := img.RawConfigFile()
	cfgDigest, _ := img.ConfigName()
	blobs := map[v1.Hash][]byte{cfgDigest: cfg}
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, _ := l.Compressed()
		b, _ := io.ReadAll(rc)
		h, _ := l.Digest()
		blobs[h] = b
	}
	for h, b := range blobs {
		loc := Request(t, http.MethodPost, d.URL("/v2/"+repo+"/blobs/uploads/"), nil, nil, http.StatusAccepted)
		for off := 0; off < len(b); off += chunk {
			end := min(off+chunk, len(b))
			loc = Request(t, http.MethodPatch, d.abs(loc), b[off:end], map[string]string{
				"Content-Range": fmt.Sprintf("%d-%d", off, end-1),
				"Content-Type":  "application/octet-stream",
			}, http.StatusAccepted)
		}
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		Request(t, http.MethodPut, d.abs(loc)+sep+"digest="+h.String(), nil, nil, http.StatusCreated)
	}
	m, _ := img.RawManifest()
	mt, _ := img.MediaType()
	Request(t, http.MethodPut, d.URL("/v2/"+repo+"/manifests/"+tag), m, map[string]string{"Content-Type": string(mt)}, http.StatusCreated)
}

func (d *Disco) abs(loc string) string {
	if strings.HasPrefix(loc, "/") {
		return d.URL(loc)
	}
	return loc
}

// request does an HTTP request, checks its status and returns its Location header.
func Request(t *testing.T, method, url string, body []byte, headers map[string]string, want int) string {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s %s, want %d", method, url, resp.Status, b, want)
	}
	return resp.Header.Get("Location")
}

func metric(t *testing.T, d *Disco, name string) *dto.Metric {
	t.Helper()
	mfs, err := d.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) > 0 {
			return mf.Metric[0]
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func Counter(t *testing.T, d *Disco, name string) float64 {
	return metric(t, d, name).GetCounter().GetValue()
}

func HistogramCount(t *testing.T, d *Disco, name string) uint64 {
	return metric(t, d, name).GetHistogram().GetSampleCount()
}

func Gauge(t *testing.T, d *Disco, name string) float64 {
	return metric(t, d, name).GetGauge().GetValue()
}
