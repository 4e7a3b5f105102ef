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

// A netBench is a benchmark of registries in network namespaces on one bridge, one of
// whose egress is capped: the fan-out and the mirrors. Each run measures, on each side,
// a burst: one pull alone, then n at once, each of a fresh image.
type netBench struct {
	n    int   // clients pulling at once
	size int64 // of the image's one layer, in bytes
	cap  int64 // of the capped egress, in bit/s
	runs int
	tmp  string

	w       *workloads
	nw      *netns.Network
	started []*registry // to stop at the end
}

// A burstSide is what a side of a netBench pulls, and what a burst on it counts.
type burstSide struct {
	name string
	// push pushes a fresh image and returns the references the n clients pull it by.
	push      func(ctx context.Context) ([]pushed, error)
	sender    *netns.Namespace   // behind the cap: what it sends during the n pulls counts
	receivers []*netns.Namespace // what each receives during the n pulls is reported
	procs     []*registry        // the registries whose CPU time counts
}

// A burstResult is what one burst measured on one side.
type burstResult struct {
	single float64   // seconds for one pull alone
	last   float64   // seconds until the last of n simultaneous pulls ended
	sent   float64   // bytes the sender sent during the n pulls, over the image's size
	got    []float64 // bytes each receiver received, over the image's size
	cpu    float64   // CPU seconds the registries used during the n pulls
}

// newNetBench makes a network of spaces namespaces for a netBench with the flags given.
// Close removes it, once the registries started are stopped.
func newNetBench(ctx context.Context, tmp string, n int, size, capMbit int64, runs, spaces int) (*netBench, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root, for network namespaces")
	}
	b := &netBench{n: n, size: size, cap: capMbit * 1e6, runs: runs, tmp: tmp, w: newWorkloads(size, 0)}
	progress("%d namespaces on a bridge", spaces)
	var err error
	if b.nw, err = netns.New(ctx, spaces); err != nil {
		return nil, err
	}
	return b, nil
}

// Close stops the registries started and removes the network.
func (b *netBench) Close() error {
	var err error
	for _, r := range b.started {
		err = errors.Join(err, r.stop())
	}
	return errors.Join(err, b.nw.Close())
}

// measure runs a burst on each side, disco first, runs times, and returns their results.
func (b *netBench) measure(ctx context.Context, disco, ref burstSide) (d, r []burstResult, err error) {
	for i := range b.runs {
		for j, s := range []burstSide{disco, ref} {
			res, err := b.burst(ctx, s, i)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", s.name, err)
			}
			if j == 0 {
				d = append(d, res)
			} else {
				r = append(r, res)
			}
			progress("run %d/%d  %-9s  single %.1fs, last of %d %.1fs, sent %.2f× the image, received %s, %.1f CPU s",
				i+1, b.runs, s.name, res.single, b.n, res.last, res.sent, multiples(res.got), res.cpu)
		}
	}
	return d, r, nil
}

// burst measures one pull alone and n at once on s, each of a fresh image. Burst i's
// single pull is of the i-th reference (mod n) that push returns.
func (b *netBench) burst(ctx context.Context, s burstSide, i int) (burstResult, error) {
	// Generous bounds: n pulls one after the other at the cap, three times over.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute+3*time.Duration(b.n)*b.atCap())
	defer cancel()
	var res burstResult
	refs, err := s.push(ctx)
	if err != nil {
		return res, err
	}
	times, err := pullAtOnce(ctx, refs[i%len(refs):i%len(refs)+1])
	if err != nil {
		return res, err
	}
	res.single = times[0]

	if refs, err = s.push(ctx); err != nil {
		return res, err
	}
	spaces := append([]*netns.Namespace{s.sender}, s.receivers...)
	cpu0, err := cpuSeconds(s.procs)
	if err != nil {
		return res, err
	}
	before, err := stats(ctx, spaces)
	if err != nil {
		return res, err
	}
	if times, err = pullAtOnce(ctx, refs); err != nil {
		return res, err
	}
	after, err := stats(ctx, spaces)
	if err != nil {
		return res, err
	}
	cpu1, err := cpuSeconds(s.procs)
	if err != nil {
		return res, err
	}
	res.cpu = cpu1 - cpu0
	res.last = slices.Max(times)
	res.sent = float64(after[0].TxBytes-before[0].TxBytes) / float64(b.size)
	for j := 1; j < len(spaces); j++ {
		res.got = append(res.got, float64(after[j].RxBytes-before[j].RxBytes)/float64(b.size))
	}
	return res, nil
}

// atCap is how long the image takes to cross the cap once.
func (b *netBench) atCap() time.Duration {
	return time.Duration(float64(b.size) * 8 / float64(b.cap) * float64(time.Second))
}

// pushFresh pushes an image of one fresh layer of the workloads' size to a new tag of
// repo on r.
func (b *netBench) pushFresh(ctx context.Context, r *registry, repo string) (pushed, error) {
	b.w.rnd.Read(b.w.buf)
	img, p, err := b.w.image(&side{reg: r}, repo, b.w.buf)
	if err != nil {
		return pushed{}, err
	}
	if err := remote.Write(p.ref, img, remote.WithContext(ctx)); err != nil {
		return pushed{}, fmt.Errorf("push to %s: %w", r.name, err)
	}
	return p, nil
}

// startPeeredDiscos starts a Disco in each of spaces, with its HOME in tmp/<prefix>-<i>,
// its IPFS node peered with all the others', and extra appended to its config. It
// returns the Discos it started, also on error, and adds them to those stopped at the end.
func (b *netBench) startPeeredDiscos(ctx context.Context, bin, prefix string, spaces []*netns.Namespace, extra string) ([]*registry, error) {
	var discos []*registry
	for i, s := range spaces {
		r, err := prepareDisco(ctx, bin, filepath.Join(b.tmp, fmt.Sprintf("%s-%d", prefix, i)), s)
		if err != nil {
			return nil, err
		}
		discos = append(discos, r)
	}
	for _, r := range discos {
		var peers []string
		for _, p := range discos {
			if p != r {
				peers = append(peers, p.ipfs)
			}
		}
		if err := r.start(ctx, bin, discoConfig(r, peers)+extra, discoEnv(r)); err != nil {
			return nil, err
		}
		b.started = append(b.started, r)
		progress("disco: pid %d in %s, http://%s, log %s", r.cmd.Process.Pid, r.ns.Name, r.host, filepath.Join(r.dir, "log"))
	}
	return discos, waitPeered(ctx, discos)
}

// startReference starts the reference in s, named name, with its data in tmp/<name> and
// extra appended to its config, and adds it to those stopped at the end.
func (b *netBench) startReference(ctx context.Context, bin, name string, s *netns.Namespace, extra string) (*registry, error) {
	dir := filepath.Join(b.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &registry{name: name, dir: dir, ns: s, host: s.Addr.String() + ":5000"}
	config := fmt.Sprintf(`version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: %s}
http:
  addr: %s
`, filepath.Join(dir, "data"), r.host) + extra
	if err := r.start(ctx, bin, config, []string{"HOME=" + dir, "OTEL_TRACES_EXPORTER=none"}); err != nil {
		return nil, err
	}
	b.started = append(b.started, r)
	progress("%s: pid %d in %s, http://%s, log %s", name, r.cmd.Process.Pid, s.Name, r.host, filepath.Join(dir, "log"))
	return r, nil
}

// fanout describes one fan-out benchmark.
type fanout struct {
	*netBench
	origin *registry   // Disco
	ref    *registry   // the reference
	peers  []*registry // the Discos that pull
}

// runFanout runs the fan-out benchmark in tmp with the binaries built there.
func runFanout(ctx context.Context, tmp, disco, reference string, n int, size, capMbit int64, runs int) (err error) {
	b, err := newNetBench(ctx, tmp, n, size, capMbit, runs, n+2)
	if err != nil {
		return fmt.Errorf("-fanout: %w", err)
	}
	defer func() { err = errors.Join(err, b.Close()) }()
	f := &fanout{netBench: b}
	spaces := f.nw.Namespaces()
	for _, s := range spaces[:2] {
		if err := s.LimitEgress(ctx, f.cap); err != nil {
			return err
		}
	}
	discos, err := f.startPeeredDiscos(ctx, disco, "disco", append([]*netns.Namespace{spaces[0]}, spaces[2:]...), "")
	if err != nil {
		return err
	}
	f.origin, f.peers = discos[0], discos[1:]
	if f.ref, err = f.startReference(ctx, reference, "reference", spaces[1], ""); err != nil {
		return err
	}

	var peerSpaces []*netns.Namespace
	for _, p := range f.peers {
		peerSpaces = append(peerSpaces, p.ns)
	}
	d, r, err := f.measure(ctx,
		burstSide{name: "disco", push: f.pushByCID, sender: f.origin.ns, receivers: peerSpaces, procs: discos},
		burstSide{name: "reference", push: f.pushRef, sender: f.ref.ns, procs: []*registry{f.ref}})
	if err != nil {
		return err
	}
	f.report(d, r)
	return nil
}

// pushByCID pushes a fresh image to the origin and returns it by CID on each of the
// Discos that pull.
func (f *fanout) pushByCID(ctx context.Context) ([]pushed, error) {
	p, err := f.pushFresh(ctx, f.origin, "fanout")
	if err != nil {
		return nil, err
	}
	c, err := cidOf(ctx, f.origin, p.ref)
	if err != nil {
		return nil, err
	}
	return pushedOn(f.peers, c, p)
}

// pushRef pushes a fresh image to the reference and returns its name n times.
func (f *fanout) pushRef(ctx context.Context) ([]pushed, error) {
	p, err := f.pushFresh(ctx, f.ref, "fanout")
	return slices.Repeat([]pushed{p}, f.n), err
}

// pushedOn returns p as each of regs names it by path: a repository and tag, or a CID.
func pushedOn(regs []*registry, path string, p pushed) ([]pushed, error) {
	var refs []pushed
	for _, r := range regs {
		ref, err := name.ParseReference(r.host+"/"+path, name.Insecure)
		if err != nil {
			return nil, err
		}
		refs = append(refs, pushed{ref: ref, layer: p.layer, size: p.size})
	}
	return refs, nil
}

// pullAtOnce pulls every ref at the same moment, each with its own client, and returns
// how long each took.
func pullAtOnce(ctx context.Context, refs []pushed) ([]float64, error) {
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
func waitPeered(ctx context.Context, discos []*registry) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, r := range discos {
		for {
			n, err := connections(ctx, r)
			if err == nil && n >= len(discos)-1 {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s in %s: %d connections to the %d other Discos (%v)", r.name, r.ns.Name, n, len(discos)-1, err)
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
func (f *fanout) report(disco, ref []burstResult) {
	f.reportBursts(fmt.Sprintf("fan-out: %d pullers, %d MiB image, origin capped at %d Mbit/s, median of %d runs",
		f.n, f.size>>20, f.cap/1e6, f.runs), "puller", disco, ref, []burstFigure{
		{name: "single pull", format: "%.1f s", value: func(r burstResult) float64 { return r.single }},
		{name: fmt.Sprintf("last of %d", f.n), format: "%.1f s", value: func(r burstResult) float64 { return r.last }},
		{name: fmt.Sprintf("last of %d / single", f.n), format: "%.2f", value: func(r burstResult) float64 { return r.last / r.single },
			target: "target disco <= 2", ok: func(d, _ float64) bool { return d <= 2 }},
		{name: "origin sent / image", format: "%.2f", value: func(r burstResult) float64 { return r.sent },
			target: "target disco <= 2", ok: func(d, _ float64) bool { return d <= 2 }},
	})
}

// A burstFigure is a line of a netBench's report: a value of each burst.
type burstFigure struct {
	name   string
	format string // of a value, with its unit
	value  func(burstResult) float64
	target string                        // what ok checks, if set
	ok     func(disco, ref float64) bool // of the medians
}

// reportBursts prints the header, then each figure's medians of the runs on both sides,
// their ratio and, if the figure has one, its target and whether it is met; then what
// each side's receivers (named so) received, and the CPU time the registries used.
func (b *netBench) reportBursts(header, receivers string, disco, ref []burstResult, figures []burstFigure) {
	figures = append(figures, burstFigure{name: fmt.Sprintf("CPU s of the registries, %d pulls", b.n), format: "%.1f",
		value: func(r burstResult) float64 { return r.cpu }})
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, f := range figures {
		d, r := medianOf(disco, f.value), medianOf(ref, f.value)
		fmt.Fprintf(tw, "%s\tdisco "+f.format+"\treference "+f.format+"\tratio %.2f", f.name, d, r, d/r)
		if f.target != "" {
			fmt.Fprintf(tw, "\t%s\t%s", f.target, verdict(f.ok(d, r)))
		}
		fmt.Fprintln(tw)
	}
	got := func(rs []burstResult) string {
		var vs []float64
		for _, r := range rs {
			vs = append(vs, r.got...)
		}
		return multiples(vs)
	}
	fmt.Fprintf(tw, "%s received / image\tdisco %s\treference %s\n", receivers, got(disco), got(ref))
	tw.Flush()
}

// medianOf returns the median of v over the results.
func medianOf(rs []burstResult, v func(burstResult) float64) float64 {
	var vs []float64
	for _, r := range rs {
		vs = append(vs, v(r))
	}
	return median(vs)
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
