package main

import (
	"context"
	"errors"
	"fmt"
)

// The mirrors benchmark: n clients pull one image at the same moment, each through its
// own pull-through mirror of an upstream whose egress is capped. On Disco the n mirrors
// are peers, and fetch each blob from the upstream about once between them; on the
// reference they are n of Distribution's pull-through caches, which share nothing. The
// upstream is Distribution's registry. Every registry runs in its own network namespace
// on one bridge; the clients run here, in discobench's namespace, and reach the mirrors
// through the bridge.

// mirrorsBench describes one mirrors benchmark.
type mirrorsBench struct {
	*netBench
	upstream *registry
}

// runMirrors runs the mirrors benchmark in tmp with the binaries built there.
func runMirrors(ctx context.Context, tmp, disco, reference string, n int, size, capMbit int64, runs int) (err error) {
	b, err := newNetBench(ctx, tmp, n, size, capMbit, runs, 2*n+1)
	if err != nil {
		return fmt.Errorf("-mirrors: %w", err)
	}
	defer func() { err = errors.Join(err, b.Close()) }()
	m := &mirrorsBench{netBench: b}
	spaces := m.nw.Namespaces()
	if err := spaces[0].LimitEgress(ctx, m.cap); err != nil {
		return err
	}
	if m.upstream, err = m.startReference(ctx, reference, "upstream", spaces[0], ""); err != nil {
		return err
	}
	proxy := fmt.Sprintf("proxy: {remoteurl: http://%s}\n", m.upstream.host)
	discos, err := m.startPeeredDiscos(ctx, disco, "disco", spaces[1:n+1], proxy)
	if err != nil {
		return err
	}
	var refs []*registry
	for i, s := range spaces[n+1:] {
		r, err := m.startReference(ctx, reference, fmt.Sprintf("reference-%d", i), s, proxy)
		if err != nil {
			return err
		}
		refs = append(refs, r)
	}

	d, r, err := m.measure(ctx, m.side("disco", discos), m.side("reference", refs))
	if err != nil {
		return err
	}
	m.reportBursts(fmt.Sprintf("mirrors: %d mirrors of one upstream, %d MiB image, upstream capped at %d Mbit/s, median of %d runs",
		m.n, m.size>>20, m.cap/1e6, m.runs), "mirror", d, r, []burstFigure{
		{name: "single pull through one mirror", format: "%.1f s", value: func(r burstResult) float64 { return r.single }},
		{name: fmt.Sprintf("last of %d", m.n), format: "%.1f s", value: func(r burstResult) float64 { return r.last },
			target: "target <= reference", ok: func(d, r float64) bool { return d <= r }},
		{name: "upstream sent / image", format: "%.2f", value: func(r burstResult) float64 { return r.sent },
			target: "target disco <= 1.5", ok: func(d, _ float64) bool { return d <= 1.5 }},
	})
	return nil
}

// side is the burst of n pulls through the mirrors, one client each, of a fresh image
// pushed to the upstream.
func (m *mirrorsBench) side(name string, mirrors []*registry) burstSide {
	s := burstSide{name: name, sender: m.upstream.ns, procs: append([]*registry{m.upstream}, mirrors...)}
	for _, r := range mirrors {
		s.receivers = append(s.receivers, r.ns)
	}
	s.push = func(ctx context.Context) ([]pushed, error) { return m.push(ctx, mirrors) }
	return s
}

// push pushes a fresh image to the upstream and returns it through each of the mirrors.
func (m *mirrorsBench) push(ctx context.Context, mirrors []*registry) ([]pushed, error) {
	p, err := m.pushFresh(ctx, m.upstream, "mirror")
	if err != nil {
		return nil, err
	}
	return pushedOn(mirrors, p.ref.Context().RepositoryStr()+":"+p.ref.Identifier(), p)
}
