package kubotest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// GoTool is a command tests need that is not in Debian: it is built from its Go module,
// fetched through the Go module proxy, once per test process, and kept across runs in
// os.UserCacheDir()/disco-e2e under its version, so later runs start at once.
type GoTool struct {
	Name    string // of the binary
	Module  string
	Version string
	Pkg     string // the main package, relative to the module's root

	// LDFlags are go build's -ldflags, for a tool whose Makefile sets the version it prints.
	LDFlags string
	// VersionArgs make the tool print its version; "version" when nil.
	VersionArgs []string

	once sync.Once
	bin  string
	err  error
}

// Kubo is Kubo's ipfs command, in the version Disco embeds.
var Kubo = &GoTool{Name: "ipfs", Module: "github.com/ipfs/kubo", Version: "v0.42.0", Pkg: "./cmd/ipfs"}

// Registry is the registry command of the Distribution release Disco is built on: the
// reference discobench measures Disco against, and the upstream the mirror's tests use.
var Registry = &GoTool{
	Name: "registry", Module: "github.com/distribution/distribution/v3", Version: "v3.1.2",
	Pkg: "./cmd/registry", VersionArgs: []string{"--version"},
}

// Path returns the tool's binary, building it if it is not cached yet. It fails t, never
// skips it, when the tool cannot be built.
func (g *GoTool) Path(t testing.TB) string {
	t.Helper()
	bin, err := g.Build()
	if err != nil {
		t.Fatalf("%s %s@%s, which this test needs, could not be built: %v", g.Name, g.Module, g.Version, err)
	}
	return bin
}

// Build returns the tool's binary, building it if it is not cached yet: Path, for a
// command such as discobench.
func (g *GoTool) Build() (string, error) {
	g.once.Do(func() { g.bin, g.err = g.build() })
	return g.bin, g.err
}

func (g *GoTool) build() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "disco-e2e")
	bin := filepath.Join(dir, g.Name+"-"+g.Version)
	if g.check(bin) == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// go test runs the packages that need the tool in parallel processes: one builds it,
	// the others wait for it and find it built.
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close() // and so unlocked
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if g.check(bin) == nil {
		return bin, nil
	}
	// go install module@version refuses modules with replace or exclude directives, Kubo
	// among them: download the module and build in its directory, where they apply.
	src, err := g.download()
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, g.Name+"-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	args := []string{"build", "-o", tmp.Name()}
	if g.LDFlags != "" {
		args = append(args, "-ldflags="+g.LDFlags)
	}
	cmd := exec.Command("go", append(args, g.Pkg)...)
	cmd.Dir, cmd.Env = src, append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %w\n%s", g.Pkg, src, err, out)
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
func (g *GoTool) download() (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", g.Module+"@"+g.Version)
	cmd.Dir = os.TempDir() // outside this module, so its go.mod is neither read nor changed
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Dir == "" {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		return "", fmt.Errorf("go mod download %s@%s: %v %s\n%s%s", g.Module, g.Version, err, info.Error, out, stderr)
	}
	return info.Dir, nil
}

// check runs the binary's version command and checks the version it prints.
func (g *GoTool) check(bin string) error {
	args := g.VersionArgs
	if args == nil {
		args = []string{"version"}
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(CleanEnv("IPFS_"), "IPFS_TELEMETRY=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", bin, strings.Join(args, " "), err, out)
	}
	if v := strings.TrimPrefix(g.Version, "v"); !strings.Contains(string(out), v) {
		return fmt.Errorf("%s version printed %q, want version %s", bin, out, v)
	}
	return nil
}

// CleanEnv returns this process's environment without the variables named, or starting
// with a name ending in "_".
func CleanEnv(drop ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, d := range drop {
			if k == d || strings.HasSuffix(d, "_") && strings.HasPrefix(k, d) {
				keep = false
			}
		}
		if keep {
			env = append(env, kv)
		}
	}
	return env
}
