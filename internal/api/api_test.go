package api_test

import (
	"bytes"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/discoregistry/disco/internal/disctest"
)

const ociManifest = v1.MediaTypeImageManifest

// do sends a request and returns the response with its body read.
func do(t *testing.T, method, url string, body []byte, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// artifact pushes to repo a manifest with the given artifactType and subject, returning
// its digest.
func artifact(t *testing.T, d *disctest.Disco, repo, artifactType, subject string) string {
	t.Helper()
	cfg := []byte("{}")
	d.PutBlob(t, repo, cfg)
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":%q,`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[],`+
		`"subject":{"mediaType":%q,"digest":%q,"size":123},"annotations":{"k":%q}}`,
		ociManifest, artifactType, disctest.SHA256(cfg), ociManifest, subject, artifactType))
	dg := disctest.SHA256(m)
	resp, body := do(t, http.MethodPut, d.URL("/v2/"+repo+"/manifests/"+dg), m, "Content-Type", ociManifest)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT artifact: %s %s", resp.Status, body)
	}
	if got := resp.Header.Get("OCI-Subject"); got != subject {
		t.Errorf("OCI-Subject = %q, want %q", got, subject)
	}
	return dg
}

func referrers(t *testing.T, d *disctest.Disco, repo, subject, query string) (v1.Index, http.Header) {
	t.Helper()
	resp, body := do(t, http.MethodGet, d.URL("/v2/"+repo+"/referrers/"+subject+query), nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != v1.MediaTypeImageIndex {
		t.Fatalf("referrers: %s %s %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	var idx v1.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		t.Fatal(err)
	}
	return idx, resp.Header
}

func TestReferrers(t *testing.T) {
	d := disctest.Start(t, "")
	subject := disctest.SHA256([]byte("a subject that does not exist yet"))
	sig := artifact(t, d, "app/x", "application/vnd.example.sig", subject)
	sbom := artifact(t, d, "app/x", "application/vnd.example.sbom", subject)

	idx, _ := referrers(t, d, "app/x", subject, "")
	if len(idx.Manifests) != 2 {
		t.Fatalf("referrers = %+v, want 2", idx.Manifests)
	}
	for _, m := range idx.Manifests {
		if m.MediaType != ociManifest || m.Size == 0 || m.Annotations["k"] != m.ArtifactType {
			t.Errorf("descriptor %+v lacks its media type, size or annotations", m)
		}
	}
	idx, h := referrers(t, d, "app/x", subject, "?artifactType=application/vnd.example.sbom")
	if len(idx.Manifests) != 1 || string(idx.Manifests[0].Digest) != sbom || h.Get("OCI-Filters-Applied") != "artifactType" {
		t.Errorf("filtered referrers = %+v, %q", idx.Manifests, h.Get("OCI-Filters-Applied"))
	}
	if idx, _ := referrers(t, d, "app/x", disctest.SHA256([]byte("nobody")), ""); len(idx.Manifests) != 0 {
		t.Errorf("a subject nobody refers to has referrers %+v", idx.Manifests)
	}
	if idx, _ := referrers(t, d, "no/such/repo", subject, ""); len(idx.Manifests) != 0 {
		t.Errorf("an unknown repository has referrers %+v", idx.Manifests)
	}
	if resp, _ := do(t, http.MethodGet, d.URL("/v2/app/x/referrers/sha256:nothex"), nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("invalid digest: %s, want 400", resp.Status)
	}

	if resp, body := do(t, http.MethodDelete, d.URL("/v2/app/x/manifests/"+sig), nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %s %s", resp.Status, body)
	}
	idx, _ = referrers(t, d, "app/x", subject, "")
	if len(idx.Manifests) != 1 || string(idx.Manifests[0].Digest) != sbom {
		t.Errorf("after deleting a referrer: %+v", idx.Manifests)
	}
}

func TestSha512(t *testing.T) {
	d := disctest.Start(t, "")
	blob := bytes.Repeat([]byte("sha512 "), 1000)
	bd := fmt.Sprintf("sha512:%x", sha512.Sum512(blob))
	resp, body := do(t, http.MethodPost, d.URL("/v2/app/x/blobs/uploads/"), nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %s %s", resp.Status, body)
	}
	resp, body = do(t, http.MethodPut, resp.Header.Get("Location")+"&digest="+bd, blob)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != bd {
		t.Fatalf("PUT by sha512: %s, digest %q, %s", resp.Status, resp.Header.Get("Docker-Content-Digest"), body)
	}
	resp, body = do(t, http.MethodGet, resp.Header.Get("Location"), nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, blob) || resp.Header.Get("Docker-Content-Digest") != bd {
		t.Errorf("GET by its Location: %s, %d bytes, digest %q", resp.Status, len(body), resp.Header.Get("Docker-Content-Digest"))
	}

	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[]}`,
		ociManifest, bd, len(blob)))
	md := fmt.Sprintf("sha512:%x", sha512.Sum512(m))
	resp, body = do(t, http.MethodPut, d.URL("/v2/app/x/manifests/"+md), m, "Content-Type", ociManifest)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != md {
		t.Fatalf("PUT manifest by sha512: %s, digest %q, %s", resp.Status, resp.Header.Get("Docker-Content-Digest"), body)
	}
	resp, body = do(t, http.MethodGet, d.URL("/v2/app/x/manifests/"+md), nil, "Accept", ociManifest)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, m) || resp.Header.Get("Docker-Content-Digest") != md {
		t.Errorf("GET manifest by sha512: %s, digest %q", resp.Status, resp.Header.Get("Docker-Content-Digest"))
	}
	bad := append([]byte(nil), m...)
	bad[len(bad)-2] = ' '
	if resp, _ := do(t, http.MethodPut, d.URL("/v2/app/x/manifests/"+md), bad, "Content-Type", ociManifest); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("PUT of other bytes under a sha512 digest: %s, want 400", resp.Status)
	}
}

func TestErrorBodies(t *testing.T) {
	d := disctest.Start(t, "")
	for _, tt := range []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, "/v2/UPPER/tags/list", 400, "NAME_INVALID"},
		{http.MethodPost, "/v2/Host/repo/blobs/uploads/", 400, "NAME_INVALID"},
		{http.MethodGet, "/v2/" + string(bytes.Repeat([]byte("a"), 256)) + "/tags/list", 400, "NAME_INVALID"},
		{http.MethodGet, "/v2/app/x/nonsense", 404, "NOT_FOUND"},
		{http.MethodGet, "/v2/app/x/tags/list", 404, "NAME_UNKNOWN"},
	} {
		if code, ec := disctest.OCIError(t, tt.method, d.URL(tt.path)); code != tt.status || ec != tt.code {
			t.Errorf("%s %s: %d %s, want %d %s", tt.method, tt.path[:min(len(tt.path), 40)], code, ec, tt.status, tt.code)
		}
	}
	// Bad input gets the code that fits, never a 500 or the name blamed.
	hello := []byte("hello")
	d.PutBlob(t, "app/y", hello)
	md5, _ := mh.Sum(hello, mh.MD5, -1)
	unknown, _ := mh.Encode([]byte("abcd"), 0x9999)
	upload := disctest.Request(t, http.MethodPost, d.URL("/v2/app/y/blobs/uploads/"), nil, nil, http.StatusAccepted)
	for _, tt := range []struct {
		method, url string
		header      []string
		status      int
		code        string
	}{
		{http.MethodGet, d.URL("/v2/" + cid.NewCidV1(cid.DagProtobuf, md5).String() + "/manifests/latest"), nil, 404, "NAME_UNKNOWN"},
		{http.MethodGet, d.URL("/v2/" + cid.NewCidV1(cid.DagProtobuf, unknown).String() + "/manifests/latest"), nil, 404, "NAME_UNKNOWN"},
		{http.MethodGet, d.URL("/v2/app/y/manifests/-bad"), nil, 400, "TAG_INVALID"},
		{http.MethodPut, d.URL("/v2/app/y/manifests/" + strings.Repeat("t", 129)), nil, 400, "TAG_INVALID"},
		{http.MethodGet, d.URL("/v2/app/y/manifests/sha256:xyz"), nil, 400, "DIGEST_INVALID"},
		{http.MethodGet, d.URL("/v2/app/y/blobs/notadigest"), nil, 400, "DIGEST_INVALID"},
		{http.MethodGet, d.URL("/v2/app/y/blobs/uploads/bad%20id"), nil, 404, "BLOB_UPLOAD_UNKNOWN"},
		{http.MethodGet, d.URL("/v2/app/y/blobs/" + disctest.SHA256(hello)), []string{"Range", "bytes=100-200"}, 416, "RANGE_INVALID"},
		{http.MethodPatch, upload, []string{"Content-Range", "abc", "Content-Type", "application/octet-stream"}, 416, "RANGE_INVALID"},
	} {
		resp, body := do(t, tt.method, tt.url, []byte("x"), tt.header...)
		var oci struct{ Errors []struct{ Code string } }
		if json.Unmarshal(body, &oci) != nil || len(oci.Errors) == 0 || resp.StatusCode != tt.status || oci.Errors[0].Code != tt.code {
			t.Errorf("%s %.70s: %s %q, want %d %s", tt.method, tt.url, resp.Status, body, tt.status, tt.code)
		}
	}
	// A PUT under the wrong digest leaves no upload behind.
	disctest.Request(t, http.MethodPut, upload+"&digest="+disctest.SHA256([]byte("other")), hello, nil, http.StatusBadRequest)
	if code, ec := disctest.OCIError(t, http.MethodGet, upload); code != 404 || ec != "BLOB_UPLOAD_UNKNOWN" {
		t.Errorf("the upload after a PUT under a wrong digest: %d %s, want 404 BLOB_UPLOAD_UNKNOWN", code, ec)
	}

	resp, body := do(t, http.MethodPut, d.URL("/v2/app/x/manifests/v1"), []byte(`{}`), "Content-Type", ociManifest)
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("MANIFEST_INVALID")) {
		t.Errorf("a manifest without schemaVersion: %s %s", resp.Status, body)
	}
}

// TestBlobGet gets blobs whole, by range, conditionally and unknown: the answers are
// Distribution's, the body of a whole blob is served by Disco with Distribution's headers.
func TestBlobGet(t *testing.T) {
	d := disctest.Start(t, "")
	blob := bytes.Repeat([]byte("a blob served whole "), 1000)
	d.PutBlob(t, "app/b", blob)
	dg := disctest.SHA256(blob)
	url := d.URL("/v2/app/b/blobs/" + dg)

	resp, body := do(t, http.MethodGet, url, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, blob) {
		t.Fatalf("GET: %s, %d bytes; want 200 and the blob", resp.Status, len(body))
	}
	head, _ := do(t, http.MethodHead, url, nil)
	for _, h := range []string{"Content-Length", "Content-Type", "Docker-Content-Digest", "Etag", "Cache-Control", "Accept-Ranges", "Docker-Distribution-Api-Version"} {
		if got, want := resp.Header.Get(h), head.Header.Get(h); got != want || want == "" {
			t.Errorf("GET: %s %q, HEAD: %q", h, got, want)
		}
	}
	if resp, body := do(t, http.MethodGet, url, nil, "Range", "bytes=2-5"); resp.StatusCode != http.StatusPartialContent || string(body) != "blob" {
		t.Errorf("GET a range: %s %q, want 206 \"blob\"", resp.Status, body)
	}
	if resp, _ := do(t, http.MethodGet, url, nil, "If-None-Match", resp.Header.Get("Etag")); resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET if none match: %s, want 304", resp.Status)
	}
	for _, u := range []string{d.URL("/v2/app/b/blobs/" + disctest.SHA256([]byte("no such blob"))), d.URL("/v2/app/other/blobs/" + dg)} {
		if code, ec := disctest.OCIError(t, http.MethodGet, u); code != 404 || ec != "BLOB_UNKNOWN" && ec != "NAME_UNKNOWN" {
			t.Errorf("GET %s: %d %s, want 404 BLOB_UNKNOWN", u, code, ec)
		}
	}
}
