package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// referenceModule is the Distribution release Disco is built on; its cmd/registry is
// the reference.
const referenceModule = "github.com/distribution/distribution/v3@v3.1.2"

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

// buildReference builds Distribution's cmd/registry in its directory in the module
// cache. The module cache is read-only, which is fine: its go.sum is complete and the
// build writes only to -o and to Go's caches.
func buildReference(ctx context.Context, out string) error {
	tmp, err := os.MkdirTemp("", "discobench-mod-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// Outside any module, so that neither Disco's go.mod nor a go.work takes part.
	env := []string{"GOWORK=off", "GOFLAGS=-mod=readonly"}
	js, err := goOutput(ctx, tmp, env, "mod", "download", "-json", referenceModule)
	if err != nil {
		return err
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal([]byte(js), &mod); err != nil {
		return fmt.Errorf("go mod download: %w", err)
	}
	if mod.Error != "" {
		return fmt.Errorf("go mod download %s: %s", referenceModule, mod.Error)
	}
	return goRun(ctx, mod.Dir, env, "build", "-o", out, "./cmd/registry")
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
