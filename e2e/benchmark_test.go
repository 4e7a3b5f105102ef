package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestBenchmarkRuns runs discobench, as docs/benchmark.md shows it, with sizes small
// enough for the suite, and checks that it measures every figure on both registries. It
// checks no target: client and registries share a busy machine here.
func TestBenchmarkRuns(t *testing.T) {
	t.Parallel()
	// Its temporary directory is the test's, so that the mounts of another discobench
	// running on the machine are not taken for its own.
	tmp := t.TempDir()
	cmd := exec.Command("go", "run", "../cmd/discobench", "-size", "1", "-n", "2", "-runs", "1")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("discobench: %v\n%s", err, out)
	}
	for _, figure := range []string{"big push", "peak RSS, big push", "big pull", "cross-node pull", "small push", "small pull"} {
		found := false
		for line := range strings.Lines(string(out)) {
			if strings.HasPrefix(line, figure+" ") && strings.Contains(line, "ratio") {
				found = true
			}
		}
		if !found {
			t.Errorf("discobench reports no %q figure:\n%s", figure, out)
		}
	}
	// The file systems it mounted for its registries' data (as root) are gone.
	if mounts, err := os.ReadFile("/proc/mounts"); err == nil && strings.Contains(string(mounts), tmp+"/discobench-") {
		t.Errorf("discobench left a file system mounted:\n%s", mounts)
	}
}
