package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// binDir holds the binaries built for this test run.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "disco-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	if err := goBuild(discoBin(), "github.com/discoregistry/disco/cmd/disco"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build disco:", err)
		return 1
	}
	defer stopDockerd()
	return m.Run()
}

func discoBin() string { return filepath.Join(binDir, "disco") }

// goBuild builds pkg, a package of this module or of one it requires, into out.
func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

var conformance struct {
	once sync.Once
	bin  string
	err  error
}

// conformanceBin builds the OCI conformance suite, a tool of this module, once per run.
func conformanceBin(t *testing.T) string {
	t.Helper()
	conformance.once.Do(func() {
		conformance.bin = filepath.Join(binDir, "conformance")
		conformance.err = goBuild(conformance.bin, "github.com/opencontainers/distribution-spec/conformance")
	})
	if conformance.err != nil {
		t.Fatal(conformance.err)
	}
	return conformance.bin
}

// lookTool returns the path of a command the tests need, and fails t when it is missing.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (not in PATH): the e2e tests need docker.io and skopeo; "+
			"scripts/test installs them", name)
	}
	return p
}
