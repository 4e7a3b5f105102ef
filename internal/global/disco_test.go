package global_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/discoregistry/disco/internal/config"
	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/ipfs/embedded"
	"github.com/discoregistry/disco/internal/server"
)

func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard) // the Distribution library's request logs
	os.Exit(m.Run())
}

// disco is a Disco running in the test process, with its own embedded IPFS node.
type disco struct {
	host    string
	node    *embedded.Node
	metrics *prometheus.Registry
}

// startDisco starts a Disco with the extra YAML (under the top level) and IPFS peers.
func startDisco(t *testing.T, extra string, peers ...*disco) *disco {
	t.Helper()
	home := t.TempDir()
	yaml := "log: {level: warn, accesslog: {disabled: true}}\nstorage:\n  delete: {enabled: true}\n" + extra
	c, err := config.Parse([]byte(yaml), func(k string) string {
		return map[string]string{"HOME": home, "DISCO_PORT": "0"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var peerAddrs []string
	for _, p := range peers {
		id, err := p.node.Identity(ctx)
		if err != nil {
			t.Fatal(err)
		}
		peerAddrs = append(peerAddrs, id.Addresses...)
	}
	node, err := embedded.Open(ctx, embedded.Options{
		Path: c.IPFS.Node.Path, Swarm: []string{"/ip4/127.0.0.1/tcp/0"}, Peers: peerAddrs,
	})
	if err != nil {
		t.Fatal(err)
	}
	metrics := prometheus.NewRegistry()
	g, err := global.New(global.Options{
		Node: node, Root: c.IPFS.RootDirectory, HashesOnly: c.Disco.HashesOnly, NoClone: c.Disco.NoClone,
		CloneTimeout: c.Disco.CloneTimeout, Metrics: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, c, node, g, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		g.Close()
		node.Close()
	})
	return &disco{host: ln.Addr().String(), node: node, metrics: metrics}
}

func (d *disco) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(d.host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (d *disco) url(p string) string { return "http://" + d.host + p }

// push writes img to repo:tag and returns its manifest digest.
func (d *disco) push(t *testing.T, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(d.ref(t, repoTag), img); err != nil {
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
func (d *disco) cidOf(t *testing.T, h v1.Hash) string {
	t.Helper()
	var list struct{ Tags []string }
	getJSON(t, d.url("/v2/"+h.Hex+"/tags/list"), &list)
	for _, tag := range list.Tags {
		if tag != "latest" {
			return tag
		}
	}
	t.Fatalf("digest repository %s has tags %v, want latest and a CID", h.Hex, list.Tags)
	return ""
}

func getJSON(t *testing.T, url string, v any) {
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

// ociError does a request and returns the status and the first OCI error code.
func ociError(t *testing.T, method, url string) (int, string) {
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

// pullAll pulls ref and reads every layer, checking digests.
func pullAll(t *testing.T, ref name.Reference) v1.Hash {
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

// readTree reads every file of the IPFS directory at root, by path below it.
func readTree(t *testing.T, node ipfs.Node, root string) map[string][]byte {
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

// addTree adds files given by path as a directory and returns its CID.
func addTree(t *testing.T, node ipfs.Node, byPath map[string][]byte) cid.Cid {
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

// addBytes adds b as a file and returns its CID.
func addBytes(t *testing.T, node ipfs.Node, b []byte) cid.Cid {
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

// setBlobCID rewrites the disco.json of a repository tree to map digest hex to c.
func setBlobCID(t *testing.T, repo map[string][]byte, hex string, c cid.Cid) {
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
