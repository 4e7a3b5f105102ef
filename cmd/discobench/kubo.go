package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"

	"github.com/discoregistry/disco/internal/kubotest"
)

// overKubo is -kubo: Disco runs over one Kubo daemon instead of an embedded node.
var overKubo = flag.Bool("kubo", false, "run Disco over a Kubo daemon (storage.ipfs.router.nodes) instead of an embedded node; not with -growth, -fanout or -mirrors")

// kuboTarget is the ratio to the reference every throughput figure aims at over a
// daemon, where each block crosses Kubo's RPC API.
const kuboTarget = 0.6

// startKubo builds Kubo's ipfs as the tests do, initialises a repository in a new
// directory of tmp with the
// tests' settings (free 127.0.0.1 ports, no bootstrap, no routing, no AutoConf, AutoTLS or
// telemetry) and the import profile Disco needs, and starts the daemon. The caller stops
// it, also on error.
func startKubo(tmp string) (*kubotest.Daemon, error) {
	k := kubotest.Kubo
	progress("building %s@%s %s", k.Module, k.Version, k.Pkg)
	bin, err := k.Build()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tmp, "kubo-")
	if err != nil {
		return nil, err
	}
	d, err := kubotest.Init(bin, dir)
	if err != nil {
		return nil, err
	}
	if _, err := d.Try("config", "profile", "apply", "unixfs-v1-2025"); err != nil {
		return d, err
	}
	if err := d.Launch(); err != nil {
		return d, err
	}
	progress("kubo: pid %d, %s, log %s", d.PID(), d.APIURL(), d.Log)
	return d, nil
}

// discoOver returns a start function for a disco over the daemon whose RPC API is at
// url. It has no peers: cross-node does not apply.
func discoOver(url string) func(ctx context.Context, bin, dir string, _ ...*registry) (*registry, error) {
	return func(ctx context.Context, bin, dir string, _ ...*registry) (*registry, error) {
		return launchDisco(ctx, bin, dir, fmt.Sprintf("    router:\n      nodes: [{url: %q}]\n", url))
	}
}

// kuboWorkloads are ws without cross-node, with the throughput figures' target
// kuboTarget.
func kuboWorkloads(ws []workload) []workload {
	ws = slices.DeleteFunc(ws, func(w workload) bool { return w.figures[0].name == "cross-node pull" })
	for _, w := range ws {
		for i := range w.figures {
			if w.figures[i].minRatio > 0 {
				w.figures[i].minRatio = kuboTarget
			}
		}
	}
	return ws
}
