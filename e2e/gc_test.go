package e2e

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestGarbageCollection runs disco gc on a registry with images, an upload in progress
// and an upload cancelled: it refuses while Disco runs; once Disco is stopped it removes
// blocks (at least the cancelled upload's), and everything else is still there after.
func TestGarbageCollection(t *testing.T) {
	t.Parallel()
	d := startDisco(t, discoOptions{})
	img := randomImage(t, 3<<20, 2)
	digest := pushImage(t, d, "e2e/gc", "v1", img)
	blob := randomBytes(t, 2<<20+99)
	cut := 1<<20 + 5
	loc := patchUpload(t, d, "e2e/gc", blob[:cut])
	cancelled := patchUpload(t, d, "e2e/gc", randomBytes(t, 3<<20))
	if res := send(t, http.MethodDelete, cancelled, nil); res.status != http.StatusNoContent {
		t.Fatalf("cancel upload: %d %s", res.status, res.body)
	}

	if out, err := d.Command("gc"); err == nil || !strings.Contains(out, "stop Disco first") {
		t.Errorf("disco gc while Disco runs: %v, %q; want it refused", err, out)
	}
	d.Stop()
	out, err := d.Command("gc")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m := regexp.MustCompile(`^removed (\d+) blocks, freed [0-9.]+ MiB\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("disco gc printed %q", out)
	}
	if n, _ := strconv.Atoi(m[1]); n < 3 {
		t.Errorf("disco gc removed %d blocks, want at least the cancelled upload's 3", n)
	}

	d.Start()
	checkImage(t, d, "e2e/gc:v1", img)
	checkImage(t, d, "e2e/gc@"+digest.String(), img)
	finishUpload(t, d, "e2e/gc", loc, blob, cut)
}
