package e2e

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"testing"
)

// stops are the two ways Disco goes down in the restart tests.
var stops = []struct {
	name string
	stop func(*Disco)
}{
	{"sigterm", (*Disco).Stop},
	{"sigkill", (*Disco).Kill},
}

// TestRestart stops Disco after a push, cleanly and by SIGKILL the moment the push was
// acknowledged, and starts it again: Disco persists every write before answering it, so
// the image must be there either way.
func TestRestart(t *testing.T) {
	for _, tt := range stops {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := startDisco(t, discoOptions{})
			img := randomImage(t, 2<<20, 3)
			digest := pushImage(t, d, "e2e/restart", "v1", img)

			tt.stop(d)
			d.Restart()
			checkImage(t, d, "e2e/restart:v1", img)
			checkImage(t, d, "e2e/restart@"+digest.String(), img)
		})
	}
}

// TestUploadAcrossRestart sends part of a blob upload, stops Disco cleanly or by
// SIGKILL, starts it again and finishes the upload where it was: what a PATCH answered
// 202 took is kept.
func TestUploadAcrossRestart(t *testing.T) {
	for _, tt := range stops {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := startDisco(t, discoOptions{})
			blob := randomBytes(t, 3<<20+12345)
			cut := 2<<20 + 777 // two whole chunks and part of a third
			loc := patchUpload(t, d, "e2e/upload", blob[:cut])

			tt.stop(d)
			d.Restart()
			finishUpload(t, d, "e2e/upload", loc, blob, cut)
		})
	}
}

// patchUpload starts an upload in repo with one PATCH of part, and returns its location.
func patchUpload(t *testing.T, d *Disco, repo string, part []byte) string {
	t.Helper()
	res := send(t, http.MethodPatch, startUpload(t, d, repo), part,
		"Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("0-%d", len(part)-1))
	if res.status != http.StatusAccepted {
		t.Fatalf("PATCH: %d %s", res.status, res.body)
	}
	return location(t, d, res)
}

// finishUpload checks that the upload at loc holds the first cut bytes of blob, sends the
// rest, and checks that repo serves blob.
func finishUpload(t *testing.T, d *Disco, repo, loc string, blob []byte, cut int) {
	t.Helper()
	res := send(t, http.MethodGet, loc, nil)
	if res.status != http.StatusNoContent || res.header.Get("Range") != fmt.Sprintf("0-%d", cut-1) {
		t.Fatalf("upload status: %d, Range %q, want 204 and 0-%d", res.status, res.header.Get("Range"), cut-1)
	}
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	res = send(t, http.MethodPut, withDigest(loc, digest), blob[cut:],
		"Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("%d-%d", cut, len(blob)-1))
	if res.status != http.StatusCreated {
		t.Fatalf("closing PUT: %d %s", res.status, res.body)
	}
	res = send(t, http.MethodGet, d.URL("/v2/"+repo+"/blobs/"+digest), nil)
	if res.status != http.StatusOK || fmt.Sprintf("sha256:%x", sha256.Sum256(res.body)) != digest {
		t.Errorf("GET blob: %d, %d bytes that do not hash to %s", res.status, len(res.body), digest)
	}
}
