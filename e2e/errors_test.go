package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// reply is the status of an answer and the code of its OCI error body.
type reply struct {
	status int
	code   string // "" when the body is not one OCI error document
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// sendClient gives up on a registry that does not answer, so that a test fails rather
// than hangs.
var sendClient = &http.Client{Timeout: 2 * time.Minute}

// send sends a request; header holds pairs of names and values.
func send(t *testing.T, method, u string, body []byte, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := sendClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// reply returns the status and the error code of an OCI error body: JSON, one document
// {"errors": [{"code": ...}, ...]} with at least one error and every code set.
func (r response) reply() reply {
	got := reply{status: r.status}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		return got
	}
	var body struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	if dec.Decode(&body) != nil || dec.Decode(new(any)) != io.EOF || len(body.Errors) == 0 {
		return got
	}
	for _, e := range body.Errors {
		if e.Code == "" {
			return got
		}
	}
	got.code = body.Errors[0].Code
	return got
}

// expect checks that r is one of want.
func (r response) expect(t *testing.T, want ...reply) {
	t.Helper()
	got := r.reply()
	if slices.Contains(want, got) {
		return
	}
	t.Errorf("got %d %q, want one of %v; body %q", got.status, got.code, want, r.body)
}

// startUpload starts a blob upload in repo and returns its location.
func startUpload(t *testing.T, d *Disco, repo string) string {
	t.Helper()
	res := send(t, http.MethodPost, d.URL("/v2/"+repo+"/blobs/uploads/"), nil)
	if res.status != http.StatusAccepted {
		t.Fatalf("POST upload: %d %s", res.status, res.body)
	}
	return location(t, d, res)
}

func location(t *testing.T, d *Disco, res response) string {
	t.Helper()
	loc, err := url.Parse(d.URL("/"))
	if err == nil {
		loc, err = loc.Parse(res.header.Get("Location"))
	}
	if err != nil || res.header.Get("Location") == "" {
		t.Fatalf("bad Location %q: %v", res.header.Get("Location"), err)
	}
	return loc.String()
}

// withDigest adds ?digest= to an upload location.
func withDigest(loc, digest string) string {
	u, _ := url.Parse(loc)
	q := u.Query()
	q.Set("digest", digest)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestBadInput sends requests the OCI Distribution spec says a registry refuses, and
// checks the status and error code of each answer, then that the image stored before is
// untouched.
func TestBadInput(t *testing.T) {
	t.Parallel()
	d := startDisco(t, discoOptions{})
	img := randomImage(t, 1<<20, 2)
	digest := pushImage(t, d, "e2e/good", "v1", img)
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	repo := d.URL("/v2/e2e/good")
	unknown := fmt.Sprintf("sha256:%x", sha256.Sum256(randomBytes(t, 64)))
	ociManifest := string(types.OCIManifestSchema1)

	t.Run("manifest-malformed-json", func(t *testing.T) {
		res := send(t, http.MethodPut, repo+"/manifests/v1", []byte(`{"schemaVersion": 2, "layers": [`),
			"Content-Type", ociManifest)
		res.expect(t, reply{400, "MANIFEST_INVALID"})
	})
	t.Run("manifest-without-schema-version", func(t *testing.T) {
		res := send(t, http.MethodPut, repo+"/manifests/v1", []byte(`{}`), "Content-Type", ociManifest)
		res.expect(t, reply{400, "MANIFEST_INVALID"})
	})
	t.Run("manifest-digest-mismatch", func(t *testing.T) {
		// A valid manifest put under the digest of the stored one, which it is not.
		body := append(bytes.Clone(raw), '\n')
		res := send(t, http.MethodPut, repo+"/manifests/"+digest.String(), body, "Content-Type", ociManifest)
		res.expect(t, reply{400, "DIGEST_INVALID"})
	})
	t.Run("manifest-blob-unknown", func(t *testing.T) {
		bad := *m
		bad.Layers = []v1.Descriptor{{MediaType: types.OCILayer, Size: 64, Digest: v1.Hash{
			Algorithm: "sha256", Hex: strings.TrimPrefix(unknown, "sha256:")}}}
		body, err := json.Marshal(bad)
		if err != nil {
			t.Fatal(err)
		}
		res := send(t, http.MethodPut, repo+"/manifests/v1", body, "Content-Type", ociManifest)
		res.expect(t, reply{400, "MANIFEST_BLOB_UNKNOWN"})
	})
	t.Run("blob-unknown", func(t *testing.T) {
		send(t, http.MethodGet, repo+"/blobs/"+unknown, nil).expect(t, reply{404, "BLOB_UNKNOWN"})
	})
	t.Run("blob-upload-digest-mismatch", func(t *testing.T) {
		// Other bytes closed under the digest of a stored layer.
		loc := withDigest(startUpload(t, d, "e2e/good"), m.Layers[0].Digest.String())
		res := send(t, http.MethodPut, loc, randomBytes(t, 1000), "Content-Type", "application/octet-stream")
		res.expect(t, reply{400, "DIGEST_INVALID"})
	})
	t.Run("blob-upload-out-of-order", func(t *testing.T) {
		// The spec names only the status; RANGE_INVALID is Distribution's code for it.
		loc := startUpload(t, d, "e2e/good")
		res := send(t, http.MethodPatch, loc, randomBytes(t, 10),
			"Content-Type", "application/octet-stream", "Content-Range", "0-9")
		if res.status != http.StatusAccepted {
			t.Fatalf("first PATCH 0-9: %d %s", res.status, res.body)
		}
		res = send(t, http.MethodPatch, location(t, d, res), randomBytes(t, 10),
			"Content-Type", "application/octet-stream", "Content-Range", "20-29")
		res.expect(t, reply{416, "RANGE_INVALID"})
	})
	t.Run("blob-upload-unknown", func(t *testing.T) {
		res := send(t, http.MethodGet, repo+"/blobs/uploads/00000000-0000-4000-8000-000000000000", nil)
		res.expect(t, reply{404, "BLOB_UPLOAD_UNKNOWN"})

		loc := startUpload(t, d, "e2e/good")
		if res := send(t, http.MethodDelete, loc, nil); res.status != http.StatusNoContent {
			t.Fatalf("DELETE upload: %d %s", res.status, res.body)
		}
		res = send(t, http.MethodPatch, loc, randomBytes(t, 10), "Content-Type", "application/octet-stream")
		res.expect(t, reply{404, "BLOB_UPLOAD_UNKNOWN"})
	})

	// The spec wants names of lowercase components and has the NAME_INVALID code, but ties
	// it to no status; its endpoint table gives 404 as the failure of the manifest, tag
	// and upload endpoints. Distribution alone answers a name its router does not match
	// with a text/plain "404 page not found" (distribution/distribution#2670); Disco turns
	// that into NAME_INVALID. Its router takes the first component of a name for a host
	// name, which may be uppercase, and Distribution then accepts the name.
	nameWant := []reply{{400, "NAME_INVALID"}, {404, "NAME_INVALID"}, {404, "NAME_UNKNOWN"}}
	t.Run("name-uppercase", func(t *testing.T) {
		res := send(t, http.MethodGet, d.URL("/v2/e2e/GOOD/manifests/v1"), nil)
		res.expect(t, nameWant...)
	})
	t.Run("name-uppercase-first-component", func(t *testing.T) {
		res := send(t, http.MethodPost, d.URL("/v2/E2E/good/blobs/uploads/"), nil)
		res.expect(t, nameWant...)
	})
	t.Run("name-too-long", func(t *testing.T) {
		res := send(t, http.MethodGet, d.URL("/v2/"+strings.Repeat("a", 256)+"/tags/list"), nil)
		res.expect(t, reply{400, "NAME_INVALID"})
	})

	checkImage(t, d, "e2e/good:v1", img)
	checkImage(t, d, "e2e/good@"+digest.String(), img)
	res := send(t, http.MethodGet, repo+"/tags/list", nil)
	if res.status != http.StatusOK || !bytes.Contains(res.body, []byte(`"tags":["v1"]`)) {
		t.Errorf("tags of e2e/good: %d %s, want only v1", res.status, res.body)
	}
}
