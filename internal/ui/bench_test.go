package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/index"
	"github.com/discoregistry/disco/internal/index/indextest"
	"github.com/discoregistry/disco/internal/ui"
)

// benchImages is how many images the benchmark pushes, each under a name of its own and
// under the digest and CID names global addressing gives it: three times as many
// repositories.
const benchImages = 2000

// BenchmarkPages measures the repository list and searches over a registry of
// benchImages images sharing a base layer, and the index's start-up build over it:
//
//	go test -run '^$' -bench Pages -benchtime 200x ./internal/ui/
func BenchmarkPages(b *testing.B) {
	base, err := random.Layer(256, types.DockerLayer)
	if err != nil {
		b.Fatal(err)
	}
	reg := indextest.New(b, index.Options{}, nil)
	var last ggcr.Image
	var lastDigest digest.Digest
	var lastCID string
	start := time.Now()
	for i := range benchImages {
		own, err := random.Layer(256, types.DockerLayer)
		if err != nil {
			b.Fatal(err)
		}
		img, err := random.Image(256, 1)
		if err != nil {
			b.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, base, own); err != nil {
			b.Fatal(err)
		}
		d := reg.Push(b, fmt.Sprintf("team-%d/app-%d", i%50, i), "v1", img)
		c := randomCID(b)
		reg.Push(b, d.Encoded(), "latest", img)
		reg.Tag(b, d.Encoded(), c, d)
		reg.Push(b, c, "latest", img)
		last, lastDigest, lastCID = img, d, c
	}
	reg.Sync(b)
	b.Logf("pushed %d images (%d repositories) in %s", benchImages, 3*benchImages, time.Since(start).Round(time.Millisecond))

	page, err := ui.New(ui.Options{Index: reg.Index, Namespace: reg.NS})
	if err != nil {
		b.Fatal(err)
	}
	h := page.Handler(http.NotFoundHandler())
	get := func(b *testing.B, path string) {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	for _, bc := range []struct{ name, path string }{
		{"list", "/ui/"},
		{"list-page-20", "/ui/?after=team-9/app-1949"},
		{"list-global", "/ui/?global=1"},
		{"search-name", "/ui/search?q=app-1999"},
		{"search-own-layer", "/ui/search?q=" + firstLayer(b, last).String()},
		{"search-shared-layer", "/ui/search?q=" + mustDigest(b, base).String()}, // 1000 rows, the most a search shows
		{"search-cid", "/ui/search?q=" + lastCID},
		{"image", "/ui/r/" + lastCID + "@" + lastDigest.String()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				get(b, bc.path)
			}
		})
	}

	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			built := indextest.New(b, index.Options{}, reg.Driver)
			for !built.Index.Status().Ready {
				time.Sleep(time.Millisecond)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			st := built.Index.Status()
			b.ReportMetric(float64(st.Entries), "entries")
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(st.Entries), "heap-bytes/entry")
			if err := built.Index.Sync(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func mustDigest(b *testing.B, l ggcr.Layer) digest.Digest {
	h, err := l.Digest()
	if err != nil {
		b.Fatal(err)
	}
	return digest.Digest(h.String())
}
