package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// goTool is a command some tests need that is not in Debian: it is built from its Go
// module, fetched through the Go module proxy, once per run, and kept across runs in
// os.UserCacheDir()/disco-e2e under its version, so later runs start at once.
type goTool struct {
	name    string // of the binary
	module  string
	version string
	pkg     string // the main package, relative to the module's root

	once sync.Once
	bin  string
	err  error
}

var (
	// kuboTool is Kubo's ipfs command, in the version Disco embeds.
	kuboTool = &goTool{name: "ipfs", module: "github.com/ipfs/kubo", version: "v0.42.0", pkg: "./cmd/ipfs"}
	// orasTool is the ORAS CLI, a client of the referrers API.
	orasTool = &goTool{name: "oras", module: "oras.land/oras", version: "v1.3.6", pkg: "./cmd/oras"}
)

// path returns the tool's binary, building it if it is not cached yet. It fails t, never
// skips it, when the tool cannot be built.
func (g *goTool) path(t *testing.T) string {
	t.Helper()
	g.once.Do(func() { g.bin, g.err = g.build() })
	if g.err != nil {
		t.Fatalf("%s %s@%s, which this test needs, could not be built: %v", g.name, g.module, g.version, g.err)
	}
	return g.bin
}

func (g *goTool) build() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "disco-e2e")
	bin := filepath.Join(dir, g.name+"-"+g.version)
	if g.check(bin) == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// go install module@version refuses modules with replace or exclude directives, Kubo
	// among them: download the module and build in its directory, where they apply.
	src, err := g.download()
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, g.name+"-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command("go", "build", "-o", tmp.Name(), g.pkg)
	cmd.Dir, cmd.Env = src, append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %w\n%s", g.pkg, src, err, out)
	}
	if err := g.check(tmp.Name()); err != nil {
		return "", err
	}
	// A rename, so that a concurrent run never sees half a binary.
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// download fetches the module into the module cache and returns its directory.
func (g *goTool) download() (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", g.module+"@"+g.version)
	cmd.Dir = os.TempDir() // outside this module, so its go.mod is neither read nor changed
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Dir == "" {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return "", fmt.Errorf("go mod download %s@%s: %v %s\n%s%s", g.module, g.version, err, info.Error, out, stderr)
	}
	return info.Dir, nil
}

// check runs the binary's version command and checks the version it prints.
func (g *goTool) check(bin string) error {
	cmd := exec.Command(bin, "version")
	cmd.Env = append(cleanEnv("IPFS_"), "IPFS_TELEMETRY=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s version: %w\n%s", bin, err, out)
	}
	if v := strings.TrimPrefix(g.version, "v"); !strings.Contains(string(out), v) {
		return fmt.Errorf("%s version printed %q, want version %s", bin, out, v)
	}
	return nil
}
