package main

import (
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/discoregistry/disco/internal/config"
)

// defaultConfig is what disco init writes: the built-in defaults, commented.
//
//go:embed default-config.yaml
var defaultConfig []byte

// initConfig writes the default configuration to the file Disco reads, or the one named.
func initConfig(e *env, args []string) error {
	fset := flag.NewFlagSet("init", flag.ContinueOnError)
	force := fset.Bool("force", false, "overwrite the file if it exists")
	if err := e.parse(fset, args); err != nil {
		return helped(err)
	}
	path, err := fileArg(e, fset)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err == nil && !*force {
		return fmt.Errorf("%s exists; disco init --force overwrites it", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// 0600: the file is where http.secret and auth settings go.
	if err := os.WriteFile(path, defaultConfig, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote %s: Disco's built-in defaults, every key commented\n", path)
	return nil
}

// checkConfig parses a configuration file as Disco does at start, and prints every
// problem and note.
func checkConfig(e *env, args []string) error {
	fset := flag.NewFlagSet("config check", flag.ContinueOnError)
	if err := e.parse(fset, args); err != nil {
		return helped(err)
	}
	path, err := fileArg(e, fset)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && fset.NArg() == 0 {
		if _, explicit := config.Path(e.getenv); !explicit {
			fmt.Fprintf(e.stdout, "%s: no such file: Disco runs on its built-in defaults\n", path)
			return nil
		}
	}
	if err != nil {
		return err
	}
	c, err := config.Parse(data, e.getenv)
	if err != nil {
		problems := config.Errors(err)
		for _, p := range problems {
			fmt.Fprintf(e.stdout, "%s: %v\n", path, p)
		}
		if len(problems) == 1 {
			return fmt.Errorf("%s: 1 problem: Disco would not start", path)
		}
		return fmt.Errorf("%s: %d problems: Disco would not start", path, len(problems))
	}
	for _, n := range c.Notes {
		fmt.Fprintf(e.stdout, "%s: note: %s\n", path, n)
	}
	fmt.Fprintf(e.stdout, "%s: ok\n", path)
	return nil
}

// fileArg returns the one optional FILE argument, else the file Disco reads.
func fileArg(e *env, fset *flag.FlagSet) (string, error) {
	switch fset.NArg() {
	case 0:
		path, _ := config.Path(e.getenv)
		return path, nil
	case 1:
		return fset.Arg(0), nil
	}
	return "", fmt.Errorf("%s: unexpected arguments %q", e.cmd.name, fset.Args()[1:])
}
