// Command discobench measures Disco against the registry of the Distribution release it
// is built on, with a real client (go-containerregistry) and the same workloads, in one
// run, and prints each figure with the ratio disco/reference.
//
//	go run ./cmd/discobench [-size MiB] [-n images] [-runs n] [-keep]
//	go run ./cmd/discobench -kubo [-size MiB] [-n images] [-runs n] [-keep]
//	go run ./cmd/discobench -growth images [-batch images] [-tags n] [-runs n] [-keep]
//	go run ./cmd/discobench -fanout n [-cap Mbit/s] [-size MiB] [-runs n] [-keep]
//	go run ./cmd/discobench -mirrors n [-cap Mbit/s] [-size MiB] [-runs n] [-keep]
//
// With -growth, it measures instead how costs grow with the registry: see growth. With
// -fanout and -mirrors, registries in network namespaces behind a capped link: see
// fanout.go and mirrors.go. With -kubo, Disco runs over a Kubo daemon instead of an
// embedded node: see kubo.go.
//
// It builds ./cmd/disco and Distribution's cmd/registry, starts both on free loopback
// ports (the reference on the filesystem driver), each in a temporary directory, and
// stops them by PID at the end. Progress goes to stderr, the figures to stdout.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/discoregistry/disco/internal/kubotest"
	"github.com/discoregistry/disco/internal/netns"
)

func main() {
	size := flag.Int64("size", 256, "size of the big image's layer, in MiB")
	n := flag.Int("n", 50, "number of small images (one 4 KiB layer each)")
	runs := flag.Int("runs", 3, "runs of each workload on each registry; the median is reported")
	keep := flag.Bool("keep", false, "keep the temporary directory (binaries, configs, data, logs)")
	var g growthOptions
	flag.IntVar(&g.n, "growth", 0, "measure how costs grow instead: push this many images, each to its own repository")
	flag.IntVar(&g.batch, "batch", 0, "with -growth, images pushed to one registry before the other takes its turn (default: a tenth)")
	flag.IntVar(&g.tags, "tags", 0, "with -growth, the tags of the repository whose tag list is read (default: as many as images)")
	var f fanOptions
	flag.IntVar(&f.n, "fanout", 0, "instead, pull one image by CID on this many Discos at once (see fanout.go; needs root)")
	flag.IntVar(&f.mirrors, "mirrors", 0, "instead, pull one image through this many mirrors of one upstream at once (see mirrors.go; needs root)")
	flag.Int64Var(&f.capMbit, "cap", 100, "with -fanout: the origin's egress; with -mirrors: the upstream's; in Mbit/s")
	flag.Parse()
	if flag.NArg() > 0 || *size <= 0 || *n <= 0 || *runs <= 0 || g.n < 0 || g.batch < 0 || g.tags < 0 || f.n < 0 || f.capMbit <= 0 ||
		f.mirrors < 0 || f.n > 0 && f.mirrors > 0 || f.n+2 > netns.MaxNamespaces || 2*f.mirrors+1 > netns.MaxNamespaces {
		flag.Usage()
		os.Exit(2)
	}
	if *overKubo && (g.n > 0 || f.n > 0 || f.mirrors > 0) {
		fmt.Fprintln(os.Stderr, "discobench: -kubo is for the default workloads, not -growth, -fanout or -mirrors")
		os.Exit(2)
	}
	if g.n > 0 {
		g.runs = *runs
		g.batch = cmp.Or(g.batch, max(1, g.n/10))
		g.tags = cmp.Or(g.tags, g.n)
		*size = 1 // no big layer
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *size<<20, *n, *runs, *keep, g, f); err != nil {
		fmt.Fprintln(os.Stderr, "discobench:", err)
		os.Exit(1)
	}
}

// fanOptions are the flags of -fanout and -mirrors.
type fanOptions struct {
	n       int   // Discos pulling at once
	mirrors int   // mirrors pulling through at once
	capMbit int64 // the origin's or the upstream's egress
}

func run(ctx context.Context, size int64, n, runs int, keep bool, g growthOptions, f fanOptions) (err error) {
	tmp, err := os.MkdirTemp("", "discobench-")
	if err != nil {
		return err
	}
	defer func() {
		if keep {
			progress("kept %s", tmp)
		} else {
			err = errors.Join(err, os.RemoveAll(tmp))
		}
	}()

	progress("building disco")
	disco := filepath.Join(tmp, "disco")
	if err := buildDisco(ctx, disco); err != nil {
		return err
	}
	ref := kubotest.Registry
	progress("building the reference, %s@%s %s", ref.Module, ref.Version, ref.Pkg)
	reference, err := buildReference()
	if err != nil {
		return err
	}

	if f.n > 0 {
		return runFanout(ctx, tmp, disco, reference, f.n, size, f.capMbit, runs)
	}
	if f.mirrors > 0 {
		return runMirrors(ctx, tmp, disco, reference, f.mirrors, size, f.capMbit, runs)
	}

	startD := startDisco
	if *overKubo {
		k, err := startKubo(tmp)
		if k != nil {
			defer k.Stop() // after the Discos over it
		}
		if err != nil {
			return err
		}
		startD = discoOver(k.APIURL())
	}
	var unmounts []func() error
	defer func() { // after the registries stop
		for _, u := range unmounts {
			err = errors.Join(err, u())
		}
	}()
	var started []*registry
	defer func() {
		for _, r := range started {
			err = errors.Join(err, r.stop())
		}
	}()
	// newSide starts the side's first registry; workloads may start more. A side's
	// registries keep their data on a file system of the side's own.
	newSide := func(name, bin string, start func(ctx context.Context, bin, dir string, peers ...*registry) (*registry, error)) (*side, error) {
		s := &side{name: name}
		fs := filepath.Join(tmp, name+"-fs")
		unmount, err := ownFS(ctx, fs, sideFS)
		if err != nil {
			return nil, err
		}
		unmounts = append(unmounts, unmount)
		s.newRegistry = func(ctx context.Context, peers ...*registry) (*registry, error) {
			dir, err := os.MkdirTemp(fs, name+"-")
			if err != nil {
				return nil, err
			}
			r, err := start(ctx, bin, dir, peers...)
			if err != nil {
				return nil, err
			}
			started = append(started, r)
			progress("%s: pid %d, http://%s, log %s", name, r.cmd.Process.Pid, r.host, filepath.Join(dir, "log"))
			if r.debug != "" {
				progress("%s: pprof at http://%s/debug/pprof/", name, r.debug)
			}
			return r, nil
		}
		s.reg, err = s.newRegistry(ctx)
		return s, err
	}
	d, err := newSide("disco", disco, startD)
	if err != nil {
		return err
	}
	r, err := newSide("reference", reference, startReference)
	if err != nil {
		return err
	}

	if g.n > 0 {
		return growth(ctx, newWorkloads(size, n), d, r, g)
	}
	ws := newWorkloads(size, n).list()
	if *overKubo {
		ws = kuboWorkloads(ws)
	}
	values, err := measure(ctx, ws, d, r, runs)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	for _, w := range ws {
		for _, f := range w.figures {
			report(tw, f, median(values[f.name][d]), median(values[f.name][r]))
		}
	}
	return tw.Flush()
}

// sideFS is the size of each side's file system (sparse, a million inodes): room for
// -runs 5 of the big image pushed, pulled across and garbage, and for -growth 10000.
const sideFS = 24 << 30

// measure runs each workload runs times on disco and on the reference, interleaved, and
// returns each figure's values by side.
func measure(ctx context.Context, ws []workload, disco, ref *side, runs int) (map[string]map[*side][]float64, error) {
	values := map[string]map[*side][]float64{}
	for i := range runs {
		// Alternate which registry goes first, so that a trend in the machine's load
		// (a build starting next door) hits both alike.
		sides := []*side{disco, ref}
		if i%2 == 1 {
			slices.Reverse(sides)
		}
		for _, w := range ws {
			for _, s := range sides {
				vs, err := w.run(ctx, s)
				if err != nil {
					return nil, errors.Join(fmt.Errorf("%s on %s: %w", w.figures[0].name, s.name, err), s.reg.alive())
				}
				for j, f := range w.figures {
					if values[f.name] == nil {
						values[f.name] = map[*side][]float64{}
					}
					values[f.name][s] = append(values[f.name][s], vs[j])
					progress("run %d/%d  %-20s %-9s %8.1f %s", i+1, runs, f.name, s.name, vs[j], f.unit)
				}
			}
		}
	}
	return values, nil
}

func report(tw *tabwriter.Writer, f figure, disco, ref float64) {
	ratio := disco / ref
	var target string
	ok := true
	switch {
	case f.minRatio > 0:
		target = fmt.Sprintf("target >= %.2f", f.minRatio)
		ok = ratio >= f.minRatio
	case f.maxDisco > 0:
		target = fmt.Sprintf("target disco <= %.0f %s", f.maxDisco, f.unit)
		ok = disco <= f.maxDisco
	}
	verdict := "ok"
	if !ok {
		verdict = "below target"
	}
	fmt.Fprintf(tw, "%s\tdisco %.1f %s\treference %.1f %s\tratio %.2f\t%s\t%s\n",
		f.name, disco, f.unit, ref, f.unit, ratio, target, verdict)
}

func median(vs []float64) float64 {
	s := slices.Sorted(slices.Values(vs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
