// Command disco is a container registry that keeps everything in IPFS.
//
//	disco                serve the registry (the default)
//	disco init           write a commented default configuration
//	disco config check   validate a configuration file
//	disco resolve REF    print the digest and CID of an image in a running Disco
//	disco id             print the IPFS node's identity as JSON
//	disco gc, disco rm   remove what nothing uses, or an image, with Disco stopped
//	disco health         check that a running Disco is healthy
//	disco version        print the version
//
// disco help, and --help after any command, say more.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/discoregistry/disco/internal/app"
	"github.com/discoregistry/disco/internal/config"
)

const footer = `
Configuration is read from $REGISTRY_CONFIGURATION_PATH, else ~/.disco/config.yaml;
without either, built-in defaults apply. The registry listens on $DISCO_PORT (default 1970).
`

// A command is one of disco's subcommands.
type command struct {
	name    string // as typed: "gc", "config check"
	args    string // what follows the name on its usage line
	summary string // one line for disco help
	about   string // what disco CMD --help says below the usage line
	run     func(e *env, args []string) error
}

var commands = []*command{
	{name: "serve", summary: "serve the registry (the default)", run: serve,
		about: "Serves the registry on $DISCO_PORT (default 1970) until SIGINT or SIGTERM; requests\n" +
			"in flight then get http.draintimeout (default 30s) to finish."},
	{name: "init", args: "[--force] [FILE]", summary: "write a commented default configuration", run: initConfig,
		about: "Writes Disco's built-in defaults, every key commented, to FILE, else to the file Disco\n" +
			"reads: $REGISTRY_CONFIGURATION_PATH, else ~/.disco/config.yaml. An existing file is\n" +
			"left alone unless --force is given."},
	{name: "config check", args: "[FILE]", summary: "validate a configuration file", run: checkConfig,
		about: "Parses FILE, else the file Disco reads, as disco does at start, and prints every\n" +
			"problem with its line, and a note for each key that Disco accepts but does not use as\n" +
			"written. It exits 1 when Disco would refuse the file."},
	{name: "resolve", args: "[--insecure] REF", summary: "print the digest and CID of an image in a running Disco", run: resolve,
		about: "Asks a running Disco, over the registry API, for the manifest digest of REF and for the\n" +
			"CID it files the image under, and prints both as JSON. REF is [HOST/]NAME[:TAG|@DIGEST];\n" +
			"HOST defaults to localhost:$DISCO_PORT (1970). Credentials come from $DISCO_USERNAME and\n" +
			"$DISCO_PASSWORD when both are set, else from docker's config (docker login).\n" +
			"A CID this Disco does not hold is fetched from IPFS first, within disco.clonetimeout."},
	{name: "id", summary: "print the IPFS node's identity as JSON", run: printID,
		about: "Prints the node's peer ID and the addresses of storage.ipfs.node.swarm, creating the\n" +
			"node's repository if there is none yet. Works whether or not Disco is running."},
	{name: "gc", args: "[--dry-run]", summary: "remove what nothing uses (with Disco stopped)", run: collectGarbage,
		about: "Removes the blobs no manifest names, then the IPFS blocks that neither the registry nor\n" +
			"an upload in progress uses, and prints what it freed. Disco must be stopped."},
	{name: "rm", args: "REF...", summary: "remove images for good (with Disco stopped)", run: remove,
		about: "Removes each image from every repository that holds it, with its digest and CID\n" +
			"repositories. REF is name:tag, name@digest, a digest repository or a CID. disco gc then\n" +
			"frees their bytes. Disco must be stopped."},
	{name: "health", summary: "check that the Disco configured here is healthy", run: health,
		about: "Asks the Disco that the configuration describes for GET /debug/health on the registry\n" +
			"port, prints ok and exits 0 when it answers 200, exits 1 otherwise. It is the container\n" +
			"image's health check, which has no curl."},
	{name: "version", summary: "print the version", run: printVersion,
		about: "Prints Disco's version, with the Go, Distribution and Kubo versions built in."},
}

func main() {
	e := &env{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr}
	if err := run(os.Args[1:], e); err != nil {
		fmt.Fprintln(os.Stderr, "disco:", err)
		os.Exit(1)
	}
}

// env is what a command runs with.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	cmd            *command // the command running
}

func run(args []string, e *env) error {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return run(append(args[1:], "--help"), e)
		}
		fmt.Fprint(e.stdout, overview())
		return nil
	}
	name, rest := args[0], args[1:]
	if name == "config" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = "config "+rest[0], rest[1:]
	}
	for _, c := range commands {
		if c.name == name {
			e.cmd = c
			return c.run(e, rest)
		}
	}
	return fmt.Errorf("unknown command %q\n%s", name, overview())
}

func overview() string {
	var b strings.Builder
	b.WriteString("usage: disco [COMMAND] [ARGS]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-14s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun disco COMMAND --help for what a command does and its options.\n")
	b.WriteString(footer)
	return b.String()
}

// parse parses the running command's arguments with fs, whose flags the command has
// defined. With -h or --help it prints the command's help and returns errHelp.
func (e *env) parse(fs *flag.FlagSet, args []string) error {
	c := e.cmd
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	help := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "usage: %s\n\n%s\n", strings.TrimSpace("disco "+c.name+" "+c.args), c.about)
		if hasFlags(fs) {
			b.WriteString("\nOptions:\n")
			fs.SetOutput(&b)
			fs.PrintDefaults()
		}
		b.WriteString(footer)
		return b.String()
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(e.stdout, help())
		return errHelp
	case err != nil:
		return fmt.Errorf("%s: %w\n%s", c.name, err, help())
	}
	return nil
}

// errHelp is returned by parse when the command printed its help: it ends the command
// with no error.
var errHelp = errors.New("help printed")

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseNone parses the arguments of a command that takes none.
func (e *env) parseNone(args []string) error {
	fs := flag.NewFlagSet(e.cmd.name, flag.ContinueOnError)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", e.cmd.name, fs.Args())
	}
	return nil
}

// helped turns errHelp into success.
func helped(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

func printVersion(e *env, args []string) error {
	if err := e.parseNone(args); err != nil {
		return helped(err)
	}
	fmt.Fprintln(e.stdout, versionString())
	return nil
}

// printID prints the identity of each IPFS node, as one JSON object each.
func printID(e *env, args []string) error {
	if err := e.parseNone(args); err != nil {
		return helped(err)
	}
	c, err := config.Load(e.getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids, err := app.Identities(ctx, c)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	for _, id := range ids {
		if err := enc.Encode(id); err != nil {
			return err
		}
	}
	return nil
}

// defaultMemoryLimit is the soft memory limit Disco runs with unless $GOMEMLIMIT sets
// one. Garbage collection otherwise lets the heap grow to twice what is live, and what is
// live grows with the registry (the web page's index, the caches of the IPFS node):
// with 10,000 images, that was 300 MiB. With 200 MiB, the peak RSS at 10,000 images was
// 263 MiB, 88 MiB of it the binary's pages, while 37 MiB was live when idle and 56 MiB
// after a restart's index build.
const defaultMemoryLimit = 160 << 20

func serve(e *env, args []string) (err error) {
	if err := e.parseNone(args); err != nil {
		return helped(err)
	}
	c, err := config.Load(e.getenv)
	if err != nil {
		return err
	}
	log := newLogger(c, e.stderr)
	if e.getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if c.File == "" {
		path, _ := config.Path(e.getenv)
		log.Info("no configuration file, using built-in defaults", "looked_for", path)
	} else {
		log.Info("configuration read", "file", c.File)
	}
	for _, n := range c.Notes {
		log.Info("configuration key not used as written", "key", n.Key, "line", n.Line, "note", n.Text)
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
	for _, node := range d.Nodes {
		id, err := node.Identity(ctx)
		if err != nil {
			return err
		}
		log.Info("ipfs node ready", "id", id.ID, "addresses", id.Addresses)
	}
	if c.IPFS.CacheOnly {
		log.Info("no ipfs node: the secondary cache is the storage (storage.ipfs.cacheonly)")
	}
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
