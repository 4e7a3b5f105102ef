package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/app"
	"github.com/discoregistry/disco/internal/config"
	"github.com/discoregistry/disco/internal/gc"
)

// offline runs f on the registry's storage, opened with Disco stopped.
func offline(getenv func(string) string, f func(ctx context.Context, m *app.Storage) error) error {
	c, err := config.Load(getenv)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, err := app.OpenOffline(ctx, c)
	if err != nil {
		return err
	}
	return errors.Join(f(ctx, m), m.Close())
}

// collectGarbage removes the blobs no manifest names, then the blocks that neither the
// registry's MFS tree nor an upload in progress uses.
func collectGarbage(e *env, args []string) error {
	fs := flag.NewFlagSet("gc", flag.ContinueOnError)
	dryRun := fs.Bool("dry-run", false, "list the blobs nothing names, and remove nothing")
	if err := e.parse(fs, args); err != nil {
		return helped(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("gc: unexpected arguments %q", fs.Args())
	}
	stdout := e.stdout
	return offline(e.getenv, func(ctx context.Context, m *app.Storage) error {
		p := newProgress(e.stderr)
		defer p.Done()
		p.Show("reading the registry's manifests")
		found := 0
		stats, err := gc.Sweep(ctx, m.Store, *dryRun, func(d digest.Digest, size int64) {
			found++
			p.Show("%d blobs no manifest names", found)
			if *dryRun {
				fmt.Fprintf(stdout, "%s %d\n", d, size)
			}
		})
		if err != nil {
			return err
		}
		verb := "removed"
		if *dryRun {
			verb = "would remove"
		}
		p.Done()
		fmt.Fprintf(stdout, "%s %d blobs (%.1f MiB) no manifest names, and %d layer links to them\n",
			verb, stats.Blobs, float64(stats.Bytes)/(1<<20), stats.Links)
		if *dryRun {
			return nil
		}
		p = newProgress(e.stderr)
		p.Show("removing the IPFS blocks nothing uses")
		blocks, err := m.CollectGarbage(ctx)
		p.Done()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %d blocks, freed %.1f MiB\n", blocks.Blocks, float64(blocks.Freed)/(1<<20))
		return nil
	})
}

// remove removes images for good: from every repository that holds them, with their
// digest and CID repositories.
func remove(e *env, args []string) error {
	fs := flag.NewFlagSet("rm", flag.ContinueOnError)
	if err := e.parse(fs, args); err != nil {
		return helped(err)
	}
	refs := fs.Args()
	if len(refs) == 0 {
		return errors.New("rm: name the images to remove: name:tag, name@digest, a digest or a CID")
	}
	return offline(e.getenv, func(ctx context.Context, m *app.Storage) error {
		for _, ref := range refs {
			d, err := gc.Resolve(ctx, m.Store, ref)
			if err != nil {
				return err
			}
			removed, err := gc.Remove(ctx, m.Store, d)
			for _, r := range removed {
				fmt.Fprintln(e.stdout, "removed", r)
			}
			if err != nil {
				return err
			}
		}
		fmt.Fprintln(e.stdout, "run disco gc to free their bytes")
		return nil
	})
}
