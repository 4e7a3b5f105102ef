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
	m := regexp.MustCompile(`\nremoved (\d+) blocks, freed [0-9.]+ MiB\n$`).FindStringSubmatch(out)
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

// TestRemoveImage removes an image for good with disco rm, then frees its bytes with disco
// gc: the other image pulls by name, digest and CID; the removed one pulls by none of
// them.
func TestRemoveImage(t *testing.T) {
	t.Parallel()
	d := startDisco(t, discoOptions{})
	keep := randomImage(t, 1<<20, 1)
	kd := pushImage(t, d, "e2e/keep", "v1", keep)
	kc := cidOf(t, d, kd.String())
	doomed := randomImage(t, 3<<20, 2)
	dd := pushImage(t, d, "e2e/doomed", "v1", doomed)
	dc := cidOf(t, d, dd.String())

	if out, err := d.Command("rm", "e2e/doomed:v1"); err == nil || !strings.Contains(out, "stop Disco first") {
		t.Errorf("disco rm while Disco runs: %v, %q; want it refused", err, out)
	}
	d.Stop()
	out, err := d.Command("rm", "e2e/doomed:v1")
	if err != nil {
		t.Fatalf("disco rm: %v\n%s", err, out)
	}
	for _, want := range []string{"tag e2e/doomed:v1", "repository " + dd.Hex, "repository " + dc} {
		if !strings.Contains(out, want) {
			t.Errorf("disco rm printed %q, without %q", out, want)
		}
	}
	out, err = d.Command("gc", "--dry-run")
	if err != nil || !strings.Contains(out, "would remove 4 blobs") {
		t.Errorf("disco gc --dry-run: %v, %q; want 4 blobs to remove", err, out)
	}
	out, err = d.Command("gc")
	if err != nil {
		t.Fatalf("disco gc: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`removed 4 blobs \(([0-9.]+) MiB\).*\nremoved \d+ blocks, freed ([0-9.]+) MiB\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("disco gc printed %q", out)
	}
	if freed, _ := strconv.ParseFloat(m[2], 64); freed < 3 {
		t.Errorf("disco gc freed %s MiB, want at least the removed image's 3 MiB of layers", m[2])
	}

	d.Start()
	for _, ref := range []string{"e2e/keep:v1", kd.Hex + ":latest", kc + ":latest"} {
		checkImage(t, d, ref, keep)
	}
	for _, path := range []string{"/v2/e2e/doomed/manifests/v1", "/v2/" + dd.Hex + "/manifests/latest", "/v2/" + dc + "/manifests/latest"} {
		if res := send(t, http.MethodGet, d.URL(path), nil); res.status != http.StatusNotFound {
			t.Errorf("GET %s after rm and gc: %d, want 404", path, res.status)
		}
	}
}
