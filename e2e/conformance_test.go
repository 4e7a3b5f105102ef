package e2e

import (
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/kubotest"
)

// conformanceExpected is what the OCI conformance suite must give against Disco: no test
// case fails, and those skipped are the suite's optional features Disco does not offer,
// each with the reason, by the last element of the test case's name.
var conformanceExpected = struct {
	minPassed int
	maySkip   map[string]string
}{
	minPassed: 679,
	maySkip: map[string]string{
		"blob-post-only":       "a blob sent in the POST that opens its upload: Distribution opens an upload, the client then PUTs it",
		"blob-mount-anonymous": "a mount without from=: a blob is only mounted from a named repository the client may read",
		"blob-post-cancel":     "the suite leaves upload cancellation off unless OCI_API_BLOBS_UPLOAD_CANCEL is set",
	},
}

// junitTestCase is a test case of the suite's junit.xml.
type junitTestCase struct {
	Name   string `xml:"name,attr"`
	Status string `xml:"status,attr"`
}

func TestConformance(t *testing.T) {
	t.Parallel()
	d := startDisco(t, discoOptions{YAML: "storage: {delete: {enabled: true}}"})
	runConformance(t, d.Host)
}

// runConformance runs the OCI conformance suite against the registry at host, all areas on,
// and checks that it passes but for the optional features Disco does not offer.
func runConformance(t *testing.T, host string) {
	t.Helper()
	bin := conformanceBin(t)
	results := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = results
	cmd.Env = append(kubotest.CleanEnv("OCI_"),
		"OCI_REGISTRY="+host, "OCI_TLS=disabled",
		"OCI_REPO1=conformance/repo1", "OCI_REPO2=conformance/repo1-mount",
		"OCI_RESULTS_DIR="+results,
		"OCI_API_PULL=true", "OCI_API_PUSH=true", "OCI_API_TAGS_LIST=true", "OCI_API_REFERRER=true",
		"OCI_API_TAGS_DELETE=true", "OCI_API_MANIFESTS_DELETE=true", "OCI_API_BLOBS_DELETE=true")
	out, runErr := cmd.CombinedOutput()
	if err := os.WriteFile(filepath.Join(results, "conformance.log"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(results, "junit.xml"))
	if err != nil {
		t.Fatalf("the conformance suite wrote no junit.xml (%v, exit: %v); its output:\n%s", err, runErr, out)
	}
	var suites struct {
		Cases []junitTestCase `xml:"testsuite>testcase"`
	}
	if err := xml.Unmarshal(data, &suites); err != nil {
		t.Fatalf("junit.xml: %v", err)
	}

	var passed, skipped int
	var failed, unexpected []string
	for _, c := range suites.Cases {
		name := strings.TrimPrefix(c.Name, "OCI Conformance Test/")
		switch c.Status {
		case "passed":
			passed++
		case "skipped", "disabled":
			skipped++
			if _, ok := conformanceExpected.maySkip[path.Base(name)]; !ok {
				unexpected = append(unexpected, "skipped "+name)
			}
		default: // failure, error
			failed = append(failed, name)
			unexpected = append(unexpected, "failed "+name)
		}
	}
	t.Logf("conformance: %d passed, %d failed, %d skipped", passed, len(failed), skipped)
	if passed < conformanceExpected.minPassed {
		t.Errorf("%d test cases passed, want at least %d", passed, conformanceExpected.minPassed)
	}
	slices.Sort(unexpected)
	for _, name := range slices.Compact(unexpected) {
		t.Errorf("unexpected: %s", name)
	}
	if runErr != nil && len(failed) == 0 {
		t.Errorf("the conformance suite failed without a failed test case: %v\n%s", runErr, out)
	}
	if t.Failed() {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		t.Logf("conformance output, last lines:\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
}
