package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"github.com/discoregistry/disco/internal/netns"
)

// The fan-out benchmark: n Discos pull one image by CID at the same moment from an origin
// Disco whose egress is capped, and n clients pull one image from the reference, behind
// the same cap. Every registry runs in its own network namespace on one bridge; the
// clients run here, in discobench's namespace, and reach them through the bridge.

// fanout describes one fan-out benchmark.
type fanout struct {
	n    int   // pullers
	size int64 // of the image's one layer, in bytes
	cap  int64 // of the origin's egress, in bit/s
	runs int
	tmp  string

	w      *workloads
	nw     *netns.Network
	origin *registry   // Disco
	ref    *registry   // the reference
	peers  []*registry // the Discos that pull
}

// A fanoutResult is what one run measured on one side.
type fanoutResult struct {
	single float64   // seconds for one pull alone
	last   float64   // seconds until the last of n simultaneous pulls ended
	sent   float64   // bytes the origin sent during the n pulls, over the image's size
	got    []float64 // bytes each puller received, over the image's size; Disco only
	cpu    float64   // CPU seconds the registries used during the n pulls
}

// runFanout runs the fan-out benchmark in tmp with the binaries built there.
func runFanout(ctx context.Context, tmp, disco, reference string, n int, size, capMbit int64, runs int) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("-fanout needs root, for network namespaces")
	}
	f := &fanout{n: n, size: size, cap: capMbit * 1e6, runs: runs, tmp: tmp, w: newWorkloads(size, 0)}
	progress("fan-out: %d namespaces on a bridge", n+2)
	if f.nw, err = netns.New(ctx, n+2); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.nw.Close()) }()
	spaces := f.nw.Namespaces()
	for _, s := range spaces[:2] {
		if err := s.LimitEgress(ctx, f.cap); err != nil {
			return err
		}
	}

	var started []*registry
	defer func() {
		for _, r := range started {
			err = errors.Join(err, r.stop())
		}
	}()
	var discos []*registry
	for i, s := range append([]*netns.Namespace{spaces[0]}, spaces[2:]...) {
		r, err := prepareDisco(ctx, disco, filepath.Join(tmp, fmt.Sprintf("disco-%d", i)), s)
		if err != nil {
			return err
		}
		discos = append(discos, r)
	}
	f.origin, f.peers = discos[0], discos[1:]
	for _, r := range discos {
		var peers []string
		for _, p := range discos {
			if p != r {
				peers = append(peers, p.ipfs)
			}
		}
		if err := r.start(ctx, disco, discoConfig(r, peers), discoEnv(r)); err != nil {
			return err
		}
		started = append(started, r)
		progress("disco: pid %d in %s, http://%s, log %s", r.cmd.Process.Pid, r.ns.Name, r.host, filepath.Join(r.dir, "log"))
	}
	f.ref, err = startNamespacedReference(ctx, reference, filepath.Join(tmp, "reference"), spaces[1])
	if err != nil {
		return err
	}
	started = append(started, f.ref)
	progress("reference: pid %d in %s, http://%s", f.ref.cmd.Process.Pid, f.ref.ns.Name, f.ref.host)
	if err := f.waitPeered(ctx); err != nil {
		return err
	}

	var discoRuns, refRuns []fanoutResult
	for i := range runs {
		d, err := f.run(ctx, f.origin, i)
		if err != nil {
			return err
		}
		discoRuns = append(discoRuns, d)
		progress("run %d/%d  disco      single %.1fs, last of %d %.1fs, origin sent %.2f× the image, pullers got %s, %.0f CPU s",
			i+1, runs, d.single, n, d.last, d.sent, multiples(d.got), d.cpu)
		r, err := f.run(ctx, f.ref, i)
		if err != nil {
			return err
		}
		refRuns = append(refRuns, r)
		progress("run %d/%d  reference  single %.1fs, last of %d %.1fs, origin sent %.2f× the image, %.0f CPU s",
			i+1, runs, r.single, n, r.last, r.sent, r.cpu)
	}
	f.report(discoRuns, refRuns)
	return nil
}

// run measures one pull alone and n at once from origin, each of a fresh image. On Disco,
// run i's single pull is on puller i mod n.
func (f *fanout) run(ctx context.Context, origin *registry, i int) (fanoutResult, error) {
	// Generous bounds: n pulls one after the other at the cap, three times over.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute+3*time.Duration(f.n)*f.atCap())
	defer cancel()
	var res fanoutResult
	refs, err := f.push(ctx, origin)
	if err != nil {
		return res, err
	}
	times, err := f.pull(ctx, refs[i%len(refs):i%len(refs)+1])
	if err != nil {
		return res, err
	}
	res.single = times[0]

	if refs, err = f.push(ctx, origin); err != nil {
		return res, err
	}
	spaces := []*netns.Namespace{origin.ns}
	if origin == f.origin {
		for _, p := range f.peers {
			spaces = append(spaces, p.ns)
		}
	}
	procs := []*registry{origin}
	if origin == f.origin {
		procs = append(procs, f.peers...)
	}
	cpu0, err := cpuSeconds(procs)
	if err != nil {
		return res, err
	}
	before, err := stats(ctx, spaces)
	if err != nil {
		return res, err
	}
	if times, err = f.pull(ctx, refs); err != nil {
		return res, err
	}
	after, err := stats(ctx, spaces)
	if err != nil {
		return res, err
	}
	cpu1, err := cpuSeconds(procs)
	if err != nil {
		return res, err
	}
	res.cpu = cpu1 - cpu0
	res.last = slices.Max(times)
	res.sent = float64(after[0].TxBytes-before[0].TxBytes) / float64(f.size)
	for j := 1; j < len(spaces); j++ {
		res.got = append(res.got, float64(after[j].RxBytes-before[j].RxBytes)/float64(f.size))
	}
	return res, nil
}

// atCap is how long the image takes to cross the cap once.
func (f *fanout) atCap() time.Duration {
	return time.Duration(float64(f.size) * 8 / float64(f.cap) * float64(time.Second))
}

// push pushes a fresh image to origin and returns what the n clients pull: on Disco, the
// image by CID on each of the Discos that pull; on the reference, the pushed name n times.
func (f *fanout) push(ctx context.Context, origin *registry) ([]pushed, error) {
	f.w.rnd.Read(f.w.buf)
	img, p, err := f.w.image(&side{reg: origin}, "fanout", f.w.buf)
	if err != nil {
		return nil, err
	}
	if err := remote.Write(p.ref, img, remote.WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("push to %s: %w", origin.name, err)
	}
	if origin != f.origin {
		return slices.Repeat([]pushed{p}, f.n), nil
	}
	c, err := cidOf(ctx, origin, p.ref)
	if err != nil {
		return nil, err
	}
	var refs []pushed
	for _, peer := range f.peers {
		ref, err := name.ParseReference(peer.host+"/"+c, name.Insecure)
		if err != nil {
			return nil, err
		}
		refs = append(refs, pushed{ref: ref, layer: p.layer, size: p.size})
	}
	return refs, nil
}

// pull pulls every ref at the same moment, each with its own client, and returns how
// long each took.
func (f *fanout) pull(ctx context.Context, refs []pushed) ([]float64, error) {
	times := make([]float64, len(refs))
	errs := make([]error, len(refs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	var t0 time.Time
	for i, p := range refs {
		wg.Go(func() {
			<-start
			errs[i] = pull(ctx, p)
			times[i] = time.Since(t0).Seconds()
		})
	}
	t0 = time.Now()
	close(start)
	wg.Wait()
	return times, errors.Join(errs...)
}

// cidOf returns the CID Disco filed the image ref under: the tag of its digest repository
// other than latest.
func cidOf(ctx context.Context, r *registry, ref name.Reference) (string, error) {
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return "", err
	}
	h, err := img.Digest()
	if err != nil {
		return "", err
	}
	repo, err := name.NewRepository(r.host+"/"+h.Hex, name.Insecure)
	if err != nil {
		return "", err
	}
	tags, err := remote.List(repo, remote.WithContext(ctx))
	if err != nil {
		return "", err
	}
	for _, t := range tags {
		if strings.HasPrefix(t, "bafy") {
			return t, nil
		}
	}
	return "", fmt.Errorf("%s: no CID among the tags %v", repo, tags)
}

// cpuSeconds returns the CPU time the processes of rs have used, user and system.
func cpuSeconds(rs []*registry) (float64, error) {
	var total float64
	for _, r := range rs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.cmd.Process.Pid))
		if err != nil {
			return 0, err
		}
		// "pid (comm) state ppid ...": utime and stime are the 12th and 13th fields
		// after comm, in clock ticks of 1/100 s (USER_HZ).
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(fields) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat: %q", r.cmd.Process.Pid, b)
		}
		for _, f := range fields[11:13] {
			var ticks float64
			if _, err := fmt.Sscan(f, &ticks); err != nil {
				return 0, fmt.Errorf("/proc/%d/stat: %w", r.cmd.Process.Pid, err)
			}
			total += ticks / 100
		}
	}
	return total, nil
}

func stats(ctx context.Context, spaces []*netns.Namespace) ([]netns.Stats, error) {
	var out []netns.Stats
	for _, s := range spaces {
		st, err := s.Stats(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// waitPeered waits until every Disco's node has a connection to each of the others, by
// count, so that the first pull does not measure how long peering takes.
func (f *fanout) waitPeered(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, r := range append([]*registry{f.origin}, f.peers...) {
		for {
			n, err := connections(ctx, r)
			if err == nil && n >= f.n {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s in %s: %d connections to the %d other Discos (%v)", r.name, r.ns.Name, n, f.n, err)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// connections reads how many connections a Disco's node has from its metrics.
func connections(ctx context.Context, r *registry) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.debug+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	n := 0
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "libp2p_rcmgr_connections{") && strings.Contains(line, `scope="system"`) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err != nil {
				return 0, fmt.Errorf("metrics: %q: %w", line, err)
			}
			n += int(v)
		}
	}
	return n, nil
}

func multiples(vs []float64) string {
	if len(vs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f–%.2f×", slices.Min(vs), slices.Max(vs))
}

// report prints the medians of the runs, with the targets of the issue.
func (f *fanout) report(disco, ref []fanoutResult) {
	pick := func(rs []fanoutResult, v func(fanoutResult) float64) float64 {
		var vs []float64
		for _, r := range rs {
			vs = append(vs, v(r))
		}
		return median(vs)
	}
	single := func(r fanoutResult) float64 { return r.single }
	last := func(r fanoutResult) float64 { return r.last }
	ratio := func(r fanoutResult) float64 { return r.last / r.single }
	sent := func(r fanoutResult) float64 { return r.sent }
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "fan-out: %d pullers, %d MiB image, origin capped at %d Mbit/s, median of %d runs\n",
		f.n, f.size>>20, f.cap/1e6, f.runs)
	fmt.Fprintf(tw, "single pull\tdisco %.1f s\treference %.1f s\tratio %.2f\n",
		pick(disco, single), pick(ref, single), pick(disco, single)/pick(ref, single))
	fmt.Fprintf(tw, "last of %d\tdisco %.1f s\treference %.1f s\tratio %.2f\n",
		f.n, pick(disco, last), pick(ref, last), pick(disco, last)/pick(ref, last))
	fmt.Fprintf(tw, "last of %d / single\tdisco %.2f\treference %.2f\t\ttarget disco <= 2\t%s\n",
		f.n, pick(disco, ratio), pick(ref, ratio), verdict(pick(disco, ratio) <= 2))
	fmt.Fprintf(tw, "origin sent / image\tdisco %.2f\treference %.2f\t\ttarget disco <= 2\t%s\n",
		pick(disco, sent), pick(ref, sent), verdict(pick(disco, sent) <= 2))
	var got []float64
	for _, r := range disco {
		got = append(got, r.got...)
	}
	fmt.Fprintf(tw, "puller received / image\tdisco %s\n", multiples(got))
	cpu := func(r fanoutResult) float64 { return r.cpu }
	fmt.Fprintf(tw, "CPU s of the registries, %d pulls\tdisco %.0f\treference %.0f\n", f.n, pick(disco, cpu), pick(ref, cpu))
	tw.Flush()
}

// prepareDisco makes a Disco's HOME in dir and its node's identity, to run in s.
func prepareDisco(ctx context.Context, bin, dir string, s *netns.Namespace) (*registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &registry{name: "disco", dir: dir, ns: s, host: s.Addr.String() + ":5000", debug: s.Addr.String() + ":5001"}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(discoConfig(r, nil)), 0o644); err != nil {
		return nil, err
	}
	id, err := discoID(ctx, bin, append(discoEnv(r), "REGISTRY_CONFIGURATION_PATH="+cfg))
	if err != nil {
		return nil, err
	}
	r.ipfs = id
	return r, nil
}

func discoConfig(r *registry, peers []string) string {
	js, _ := json.Marshal(peers)
	return fmt.Sprintf(`version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  ipfs:
    node:
      swarm: [/ip4/%s/tcp/4001]
      peers: %s
http:
  addr: %s
  debug: {addr: %s, prometheus: {enabled: true, path: /metrics}}
`, r.ns.Addr, js, r.host, r.debug)
}

func discoEnv(r *registry) []string {
	return []string{"HOME=" + r.dir, "DISCO_PORT=5000"}
}

// startNamespacedReference starts the reference in s.
func startNamespacedReference(ctx context.Context, bin, dir string, s *netns.Namespace) (*registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &registry{name: "reference", dir: dir, ns: s, host: s.Addr.String() + ":5000"}
	config := fmt.Sprintf(`version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: %s}
http:
  addr: %s
`, filepath.Join(dir, "data"), r.host)
	if err := r.start(ctx, bin, config, []string{"HOME=" + dir}); err != nil {
		return nil, err
	}
	return r, nil
}
