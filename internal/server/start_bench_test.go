package server_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/discoregistry/disco/internal/disctest"
)

// BenchmarkStart fills a registry with $DISCO_BENCH_IMAGES images (default 2000), each
// under a name of its own and the digest and CID names global addressing gives it, then
// starts Disco on it again and measures how long it takes to answer its first request,
// with the web page off and on, and how long the index takes to read the registry:
//
//	go test -run '^$' -bench Start -benchtime 1x ./internal/server/
//
// With $DISCO_BENCH_HOME, the registry is kept there, and a later run reuses it.
func BenchmarkStart(b *testing.B) {
	n := 2000
	if s := os.Getenv("DISCO_BENCH_IMAGES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("DISCO_BENCH_IMAGES: %v", err)
		}
	}
	home := b.TempDir()
	if h := os.Getenv("DISCO_BENCH_HOME"); h != "" {
		home = h // kept: a second run reuses what the first pushed
		if _, err := os.Stat(filepath.Join(home, ".disco")); err == nil {
			n = 0
		}
	}
	d := disctest.StartIn(b, home, "ui: {enabled: false}\n")
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				img, err := random.Image(256, 1)
				if err == nil {
					var ref name.Reference
					if ref, err = name.ParseReference(fmt.Sprintf("%s/team-%d/app-%d:v1", d.Host, i%50, i), name.Insecure); err == nil {
						err = remote.Write(ref, img)
					}
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.Logf("pushed %d images in %s", n, time.Since(start).Round(time.Millisecond))
	d.Stop()

	get := func(url string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/html")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	for b.Loop() {
		for _, on := range []bool{false, true} {
			start := time.Now()
			d := disctest.StartIn(b, home, fmt.Sprintf("ui: {enabled: %v}\n", on))
			if code, _ := get(d.URL("/v2/")); code != http.StatusOK {
				b.Fatalf("GET /v2/: %d", code)
			}
			metric := "first-answer-ms"
			if on {
				metric = "first-answer-ui-on-ms"
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000, metric)
			if !on {
				t0 := time.Now()
				d.Stop()
				b.Logf("stopped with the page off in %s", time.Since(t0).Round(time.Millisecond))
				continue
			}
			for {
				code, body := get(d.URL("/ui/"))
				if code != http.StatusOK {
					b.Fatalf("GET /ui/: %d", code)
				}
				if !strings.Contains(body, `id="indexing"`) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			b.ReportMetric(time.Since(start).Seconds(), "index-ready-s")
			for _, page := range []string{"/ui/", "/ui/search?q=app-1", "/ui/?global=1"} {
				t0 := time.Now()
				if code, _ := get(d.URL(page)); code != http.StatusOK {
					b.Fatalf("GET %s: %d", page, code)
				}
				b.Logf("GET %s over the real server: %s", page, time.Since(t0).Round(time.Microsecond))
			}
			t0 := time.Now()
			d.Stop()
			b.Logf("stopped with the page on in %s", time.Since(t0).Round(time.Millisecond))
		}
	}
}
