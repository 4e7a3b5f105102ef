package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/discoregistry/disco/internal/kubotest"
)

// buildDisco builds ./cmd/disco of the module discobench runs in.
func buildDisco(ctx context.Context, out string) error {
	gomod, err := goOutput(ctx, "", nil, "env", "GOMOD")
	if err != nil {
		return err
	}
	if gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("not inside the disco module: run discobench from the repository")
	}
	return goRun(ctx, filepath.Dir(gomod), nil, "build", "-o", out, "./cmd/disco")
}

// buildReference returns Distribution's cmd/registry, built from the Go module proxy as
// the tests build it, and cached with theirs.
func buildReference() (string, error) {
	return kubotest.Registry.Build()
}

func goCmd(ctx context.Context, dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

func goRun(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := goCmd(ctx, dir, env, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s in %s: %w", strings.Join(args, " "), dir, err)
	}
	return nil
}

func goOutput(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := goCmd(ctx, dir, env, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}
