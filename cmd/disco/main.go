// Command disco is a container registry that keeps everything in IPFS.
//
//	disco          serve the registry (the default)
//	disco version  print the version
//	disco id       print the IPFS node's identity as JSON
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/discoregistry/disco/internal/app"
	"github.com/discoregistry/disco/internal/config"
	"github.com/discoregistry/disco/internal/ipfs/embedded"
)

const usage = `usage: disco [serve | version | id | gc]

  serve    serve the registry (the default)
  version  print the version
  id       print the IPFS node's identity as JSON
  gc [--dry-run]
           remove the blobs no manifest names, then the IPFS blocks nothing uses
           (with Disco stopped); --dry-run lists the blobs and removes nothing
  rm REF...
           remove images for good (with Disco stopped): REF is name:tag,
           name@digest, a digest repository or a CID; disco gc then frees their bytes

Configuration is read from $REGISTRY_CONFIGURATION_PATH, else ~/.disco/config.yaml;
without either, built-in defaults apply. The registry listens on $DISCO_PORT (default 1970).
`

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "disco:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	if len(args) > 1 && cmd != "gc" && cmd != "rm" {
		return fmt.Errorf("unexpected arguments %q\n%s", args[1:], usage)
	}
	switch cmd {
	case "serve":
		return serve(getenv, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "id":
		return printID(getenv, stdout)
	case "gc":
		return collectGarbage(args[1:], getenv, stdout)
	case "rm":
		return remove(args[1:], getenv, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

func printID(getenv func(string) string, stdout io.Writer) error {
	c, err := config.Load(getenv)
	if err != nil {
		return err
	}
	id, err := embedded.ReadIdentity(app.NodeOptions(c, nil))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(id)
}

// defaultMemoryLimit is the soft memory limit Disco runs with unless $GOMEMLIMIT sets
// one. Garbage collection otherwise lets the heap grow to twice what is live, and what is
// live grows with the registry (the web page's index, the caches of the IPFS node):
// with 10,000 images, that was 300 MiB.
const defaultMemoryLimit = 200 << 20

func serve(getenv func(string) string, stderr io.Writer) (err error) {
	c, err := config.Load(getenv)
	if err != nil {
		return err
	}
	log := newLogger(c, stderr)
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if c.File == "" {
		path, _ := config.Path(getenv)
		log.Info("no configuration file, using built-in defaults", "looked_for", path)
	} else {
		log.Info("configuration read", "file", c.File)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills at once
	}()

	d, err := app.Open(ctx, c, app.Options{Log: log, Metrics: prometheus.DefaultRegisterer})
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, d.Close())
		log.Info("stopped")
	}()
	id, err := d.Node.Identity(ctx)
	if err != nil {
		return err
	}
	log.Info("ipfs node started", "id", id.ID, "addresses", id.Addresses, "public", c.IPFS.Node.Public)
	srv := d.Server
	ln, err := srv.Listen()
	if err != nil {
		return err
	}
	log.Info("registry listening", "addr", ln.Addr().String(), "version", versionString())
	return srv.Serve(ctx, ln)
}

func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "disco (unknown version)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && (v == "" || v == "(devel)") {
			v = "devel-" + s.Value[:min(12, len(s.Value))]
		}
	}
	deps := ""
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/distribution/distribution/v3", "github.com/ipfs/kubo":
			deps += ", " + d.Path + " " + d.Version
		}
	}
	return fmt.Sprintf("disco %s (%s%s)", v, bi.GoVersion, deps)
}
