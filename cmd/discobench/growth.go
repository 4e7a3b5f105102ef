package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// growthOptions configure the growth mode.
type growthOptions struct {
	n     int // images, one repository each
	batch int // images a batch
	tags  int // tags of the one repository whose tag list is read
	runs  int
}

// growth measures how the costs of both registries grow with their size: it pushes n
// images of one 4 KiB layer, each to a repository of its own and tagged, to both, a
// batch at a time, interleaved, and reports each batch's throughput and p99 latency;
// then, on the registries so filled, a walk of the whole catalog, a tag list of o.tags
// tags, pulls of 100 random images, peak and idle RSS, the longest a probe request
// waited, the time to stop on SIGTERM and to answer again once restarted. It checks
// what does not depend on timing: every image pulls, the catalog lists every repository
// once, no upload directory is left behind.
func growth(ctx context.Context, w *workloads, disco, ref *side, o growthOptions) error {
	sides := []*side{disco, ref}
	startRSS := map[*side]float64{}
	for _, s := range sides {
		rss, err := s.reg.rss()
		if err != nil {
			return err
		}
		startRSS[s] = rss
	}
	probes := map[*side]*probe{}
	for _, s := range sides {
		probes[s] = startProbe(ctx, s.reg)
		defer probes[s].stop()
	}
	pushed := map[*side][]pushed{}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "images\tdisco img/s\treference img/s\tratio\tdisco p99 ms\treference p99 ms\tratio\t")
	var ratios, p99s []float64
	for b := 0; b*o.batch < o.n; b++ {
		first, last := b*o.batch, min((b+1)*o.batch, o.n)
		order := slices.Clone(sides)
		if b%2 == 1 {
			slices.Reverse(order)
		}
		rate, p99 := map[*side]float64{}, map[*side]float64{}
		for _, s := range order {
			ps, lat, secs, err := pushBatch(ctx, w, s, first, last)
			if err != nil {
				return errors.Join(fmt.Errorf("push on %s: %w", s.name, err), s.reg.alive())
			}
			pushed[s] = append(pushed[s], ps...)
			rate[s], p99[s] = float64(last-first)/secs, percentile(lat, 0.99)
			if first == 0 {
				probes[s].target(ps[0].ref)
			}
		}
		ratios = append(ratios, rate[disco]/rate[ref])
		p99s = append(p99s, p99[disco]/p99[ref])
		fmt.Fprintf(tw, "%d\t%.1f\t%.1f\t%.2f\t%.0f\t%.0f\t%.2f\t\n", last, rate[disco], rate[ref], rate[disco]/rate[ref], p99[disco], p99[ref], p99[disco]/p99[ref])
		progress("growth: %d images pushed", last)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	results := map[string]map[*side][]float64{}
	add := func(figure string, s *side, v float64) {
		if results[figure] == nil {
			results[figure] = map[*side][]float64{}
		}
		results[figure][s] = append(results[figure][s], v)
	}
	for _, s := range sides {
		secs, err := tagMany(ctx, w, s, o.tags)
		if err != nil {
			return errors.Join(fmt.Errorf("tags on %s: %w", s.name, err), s.reg.alive())
		}
		progress("growth: %s: %d tags in %.1fs", s.name, o.tags, secs)
	}
	for i := range o.runs {
		order := slices.Clone(sides)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			perRepo, err := walkCatalog(ctx, s, pushed[s])
			if err != nil {
				return errors.Join(fmt.Errorf("catalog on %s: %w", s.name, err), s.reg.alive())
			}
			add("catalog walk", s, perRepo)
			ms, err := listTags(ctx, s, o.tags)
			if err != nil {
				return errors.Join(fmt.Errorf("tags/list on %s: %w", s.name, err), s.reg.alive())
			}
			add("tags/list", s, ms)
			rate, err := pullRandom(ctx, pushed[s], 100)
			if err != nil {
				return errors.Join(fmt.Errorf("pulls on %s: %w", s.name, err), s.reg.alive())
			}
			add("100 random pulls", s, rate)
			progress("growth: run %d/%d on %s: catalog %.1f µs/repository, tags/list %.0f ms, pulls %.1f images/s", i+1, o.runs, s.name, perRepo, ms, rate)
		}
	}
	var failed []error // checks that failed, reported after the figures
	for _, s := range sides {
		if err := pullAll(ctx, pushed[s]); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", s.name, err))
		}
		peak, err := s.reg.peakRSS()
		if err != nil {
			return err
		}
		add("peak RSS", s, peak)
	}
	for _, s := range sides {
		add("longest probe wait", s, probes[s].stop().Seconds()*1000) // a probe is a use
	}
	// Idle for longer than the embedded node waits before it lets go of its tree
	// (idleAfter), and one checkpoint more.
	const idleWait = 45 * time.Second
	progress("growth: idle for %s", idleWait)
	time.Sleep(idleWait)
	for _, s := range sides {
		rss, err := s.reg.rss()
		if err != nil {
			return err
		}
		add("RSS at start", s, startRSS[s])
		add("RSS when idle", s, rss)
		if err := uploadsLeft(s.reg); err != nil {
			failed = append(failed, err)
		}
	}
	for _, s := range sides {
		d, err := s.reg.stopTimed()
		if err != nil {
			return err
		}
		add("SIGTERM to exit", s, d.Seconds())
		d, err = s.reg.restart(ctx)
		if err != nil {
			return err
		}
		add("start to first answer", s, d.Seconds())
		if err := pull(ctx, pushed[s][len(pushed[s])/2]); err != nil {
			failed = append(failed, fmt.Errorf("%s: after a restart: %w", s.name, err))
		}
	}
	// Restarted over a full registry, Disco reads all of it for its index: what that
	// takes, and that it survives it.
	for _, s := range sides {
		d, err := s.reg.settle(ctx, 10*time.Minute)
		if err != nil {
			return fmt.Errorf("%s after a restart: %w", s.name, err)
		}
		progress("growth: %s settled %.0fs after its restart", s.name, d.Seconds())
		peak, err := s.reg.peakRSS()
		if err != nil {
			return err
		}
		add("peak RSS after a restart", s, peak)
		if err := pull(ctx, pushed[s][0]); err != nil {
			failed = append(failed, fmt.Errorf("%s: once settled after a restart: %w", s.name, err))
		}
	}

	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	// The first batch pays for the registries' start: it is left out of the median.
	rest := func(vs []float64) []float64 { return vs[min(1, len(vs)-1):] }
	fmt.Fprintf(tw, "push throughput, batches\tmedian ratio %.2f\tlast batch %.2f\tall %.2f .. %.2f\ttarget >= 0.90\t%s\n",
		median(rest(ratios)), ratios[len(ratios)-1], slices.Min(ratios), slices.Max(ratios), verdict(median(rest(ratios)) >= 0.9))
	fmt.Fprintf(tw, "push p99, batches\tmedian ratio %.2f\tlast batch %.2f\tall %.2f .. %.2f\ttarget <= 2.00\t%s\n",
		median(rest(p99s)), p99s[len(p99s)-1], slices.Min(p99s), slices.Max(p99s), verdict(median(rest(p99s)) <= 2))
	const idleSlack = 32 // MiB over the RSS at start that counts as back near it
	for _, f := range []struct {
		name, unit string
		prec       int
		ratio      func(d, r float64) (string, bool)
	}{
		{"catalog walk", "µs/repository", 1, func(d, r float64) (string, bool) { return "target <= 2.00", d/r <= 2 }},
		{"tags/list", "ms", 1, func(d, r float64) (string, bool) { return "target <= 2.00", d/r <= 2 }},
		{"100 random pulls", "images/s", 1, func(d, r float64) (string, bool) { return "target >= 0.90", d/r >= 0.9 }},
		{"peak RSS", "MiB", 0, func(d, r float64) (string, bool) { return "target disco <= 256 MiB", d <= 256 }},
		{"peak RSS after a restart", "MiB", 0, func(d, r float64) (string, bool) { return "target disco <= 256 MiB", d <= 256 }},
		{"RSS at start", "MiB", 0, func(d, r float64) (string, bool) { return "", true }},
		{"RSS when idle", "MiB", 0, func(d, r float64) (string, bool) {
			base := median(results["RSS at start"][disco]) + idleSlack
			return fmt.Sprintf("target disco <= %.0f MiB", base), d <= base
		}},
		{"longest probe wait", "ms", 0, func(d, r float64) (string, bool) { return "target disco <= 1000 ms", d <= 1000 }},
		{"SIGTERM to exit", "s", 2, func(d, r float64) (string, bool) { return "target disco <= 5 s", d <= 5 }},
		{"start to first answer", "s", 2, func(d, r float64) (string, bool) { return "target disco <= 1 s", d <= 1 }},
	} {
		d, r := median(results[f.name][disco]), median(results[f.name][ref])
		target, ok := f.ratio(d, r)
		fmt.Fprintf(tw, "%s\tdisco %.*f %s\treference %.*f %s\tratio %.2f\t%s\t%s\n", f.name, f.prec, d, f.unit, f.prec, r, f.unit, d/r, target, verdict(ok))
	}
	return errors.Join(append(failed, tw.Flush())...)
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "below target"
}

// pushBatch pushes images first to last (excluded), each to its own repository, one after
// the other, and returns them with each push's latency in ms and the batch's seconds.
func pushBatch(ctx context.Context, w *workloads, s *side, first, last int) ([]pushed, []float64, float64, error) {
	var ps []pushed
	var lat []float64
	start := time.Now()
	for i := first; i < last; i++ {
		b := make([]byte, 4096)
		w.rnd.Read(b)
		img, p, err := w.image(s, fmt.Sprintf("growth/r%06d", i), b)
		if err != nil {
			return nil, nil, 0, err
		}
		t := time.Now()
		if err := remote.Write(p.ref, img, remote.WithContext(ctx)); err != nil {
			return nil, nil, 0, err
		}
		lat = append(lat, float64(time.Since(t).Microseconds())/1000)
		ps = append(ps, p)
	}
	return ps, lat, time.Since(start).Seconds(), nil
}

func percentile(vs []float64, p float64) float64 {
	s := slices.Sorted(slices.Values(vs))
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// tagRepository is the repository that gets many tags, as workloads.image names it.
const tagRepository = "bench/growth/tags"

// tagMany pushes an image to tagRepository and tags it n times in all.
func tagMany(ctx context.Context, w *workloads, s *side, n int) (float64, error) {
	b := make([]byte, 4096)
	w.rnd.Read(b)
	img, _, err := w.image(s, strings.TrimPrefix(tagRepository, "bench/"), b)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	for i := range n {
		ref, err := name.NewTag(fmt.Sprintf("%s/%s:t%06d", s.reg.host, tagRepository, i), name.Insecure)
		if err != nil {
			return 0, err
		}
		if i == 0 {
			err = remote.Write(ref, img, remote.WithContext(ctx))
		} else {
			err = remote.Tag(ref, img, remote.WithContext(ctx))
		}
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start).Seconds(), nil
}

// walkCatalog walks the whole catalog, 1000 repositories a page (go-containerregistry's
// page size and Distribution's largest), checks that it lists every repository of ps and
// none twice, and returns the time it took per repository listed, in µs.
func walkCatalog(ctx context.Context, s *side, ps []pushed) (float64, error) {
	reg, err := name.NewRegistry(s.reg.host, name.Insecure)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	repos, err := remote.Catalog(ctx, reg)
	if err != nil {
		return 0, err
	}
	secs := time.Since(start).Seconds()
	seen := make(map[string]bool, len(repos))
	for _, r := range repos {
		if seen[r] {
			return 0, fmt.Errorf("the catalog lists %s twice", r)
		}
		seen[r] = true
	}
	for _, p := range ps {
		if r := p.ref.Context().RepositoryStr(); !seen[r] {
			return 0, fmt.Errorf("the catalog does not list %s (%d repositories listed)", r, len(repos))
		}
	}
	return secs * 1e6 / float64(len(repos)), nil
}

// listTags lists the tags of tagRepository, checks there are n, and returns the time it
// took in ms.
func listTags(ctx context.Context, s *side, n int) (float64, error) {
	repo, err := name.NewRepository(s.reg.host+"/"+tagRepository, name.Insecure)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	tags, err := remote.List(repo, remote.WithContext(ctx))
	if err != nil {
		return 0, err
	}
	ms := float64(time.Since(start).Microseconds()) / 1000
	if len(tags) != n {
		return 0, fmt.Errorf("%s lists %d tags, want %d", repo, len(tags), n)
	}
	return ms, nil
}

// pullRandom pulls k random images of ps and returns the images pulled a second.
func pullRandom(ctx context.Context, ps []pushed, k int) (float64, error) {
	start := time.Now()
	for range k {
		if err := pull(ctx, ps[rand.IntN(len(ps))]); err != nil {
			return 0, err
		}
	}
	return float64(k) / time.Since(start).Seconds(), nil
}

// pullAll pulls every image of ps, four at a time.
func pullAll(ctx context.Context, ps []pushed) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	next := make(chan pushed)
	for range 4 {
		wg.Go(func() {
			for p := range next {
				if err := pull(ctx, p); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, p := range ps {
		next <- p
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d images do not pull: %w", len(errs), len(ps), errs[0])
	}
	return nil
}

// uploadsLeft checks that a disco's uploads directory holds no directory but those above
// every repository's: every upload has finished.
func uploadsLeft(r *registry) error {
	if r.name != "disco" {
		return nil
	}
	dir := filepath.Join(r.dir, ".disco", "uploads")
	var left []string
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() && !strings.HasPrefix("/docker/registry/v2/repositories", strings.TrimPrefix(p, dir)) {
			left = append(left, strings.TrimPrefix(p, dir))
		}
		return err
	})
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("%d directories left in %s, such as %s", len(left), dir, left[0])
	}
	return nil
}

// A probe asks a registry for the manifest of one image, ten times a second, and keeps
// the longest wait: a request held up behind another shows there.
type probe struct {
	mu      sync.Mutex
	ref     name.Reference
	longest time.Duration
	cancel  context.CancelFunc
	done    chan struct{}
}

func startProbe(ctx context.Context, r *registry) *probe {
	ctx, cancel := context.WithCancel(ctx)
	p := &probe{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			p.mu.Lock()
			ref := p.ref
			p.mu.Unlock()
			if ref == nil {
				continue
			}
			start := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodHead, fmt.Sprintf("http://%s/v2/%s/manifests/%s", r.host, ref.Context().RepositoryStr(), ref.Identifier()), nil)
			req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			p.mu.Lock()
			p.longest = max(p.longest, time.Since(start))
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *probe) target(ref name.Reference) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ref = ref
}

// stop stops the probe, if it runs, and returns the longest wait.
func (p *probe) stop() time.Duration {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.longest
}
