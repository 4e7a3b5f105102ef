package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3"
	_ "github.com/distribution/distribution/v3/manifest/manifestlist" // the manifest types Distribution takes
	_ "github.com/distribution/distribution/v3/manifest/ocischema"
	"github.com/distribution/distribution/v3/manifest/schema2"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/distribution/reference"
	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The fuzz targets here check Disco's checks of what a client sends against what
// Distribution does next with what they let through: whatever passes must not make
// Distribution answer with a 500.

// FuzzContentRange: a Content-Range that badRange lets through is one Distribution
// parses; one it refuses, it refuses with RANGE_INVALID.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"0-9", "10-19", "0-0", "9-0", "0-", "-9", "bytes 0-9", "0-9/10", "a-b", ""} {
		f.Add(s)
	}
	router := v2.Router()
	f.Fuzz(func(t *testing.T, cr string) {
		r := httptest.NewRequest(http.MethodPatch, "/v2/a/b/blobs/uploads/01a2340f-5566-75c2-893a-a54208099349", nil)
		r.Header.Set("Content-Range", cr)
		var m mux.RouteMatch
		if !router.Match(r, &m) {
			t.Fatal("the router does not match an upload PATCH")
		}
		if err := badRange(r, m); err != nil {
			var e errcode.Error
			if !errors.As(err, &e) || e.Code != errcode.ErrorCodeRangeInvalid {
				t.Errorf("Content-Range %q refused with %v, want RANGE_INVALID", cr, err)
			}
			return
		}
		if cr == "" {
			return
		}
		if _, _, err := distributionContentRange(cr); err != nil {
			t.Errorf("Content-Range %q passes, and Distribution answers 500: %v", cr, err)
		}
	})
}

// distributionContentRange is Distribution's parseContentRange (registry/handlers/
// helpers.go, v3.1.2), which is not exported: an error from it is a 500.
func distributionContentRange(cr string) (start int64, end int64, err error) {
	rStart, rEnd, ok := strings.Cut(cr, "-")
	if !ok {
		return -1, -1, fmt.Errorf("invalid content range format, %s", cr)
	}
	start, err = strconv.ParseInt(rStart, 10, 64)
	if err != nil {
		return -1, -1, err
	}
	end, err = strconv.ParseInt(rEnd, 10, 64)
	if err != nil {
		return -1, -1, err
	}
	return start, end, nil
}

// FuzzRepositoryName: a request whose path names a repository, and that badRequest lets
// through, names one Distribution takes: reference.WithName accepts the name its router
// reads from the path, where Distribution would fail with a 500 on one too long.
func FuzzRepositoryName(f *testing.F) {
	for _, s := range []string{"a", "library/busybox", "a.b_c__d-e/f", "A", "a//b", "-a", "a-", "a/../b", "",
		"bafybeihho3ewe6qvqhcn4vs6ycn7uycp3mw7muivpzu6pxscf7kqdblv54", strings.Repeat("a", 256),
		strings.Repeat("a/", 128) + "a", "a/tags/list/b"} {
		f.Add(s, uint8(0))
	}
	router := v2.Router()
	endpoints := []string{"/tags/list", "/manifests/latest", "/blobs/uploads/", "/blobs/" + seedDigest}
	f.Fuzz(func(t *testing.T, name string, endpoint uint8) {
		p := "/v2/" + name + endpoints[int(endpoint)%len(endpoints)]
		r, err := http.NewRequest(http.MethodGet, "http://registry"+p, nil)
		if err != nil {
			return // not a path a request can have
		}
		var m mux.RouteMatch
		matched := router.Match(r, &m)
		if badRequest(r.URL.Path, matched) != nil || !matched {
			return
		}
		routed, ok := m.Vars["name"]
		if !ok {
			return
		}
		if _, err := reference.WithName(routed); err != nil {
			t.Errorf("path %q passes, and Distribution refuses the name %q it routes: %v", p, routed, err)
		}
	})
}

const seedDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

// manifestTypes are the media types Distribution takes manifests as.
var manifestTypes = []string{v1.MediaTypeImageManifest, v1.MediaTypeImageIndex, schema2.MediaTypeManifest,
	"application/vnd.docker.distribution.manifest.list.v2+json"}

// FuzzManifest: a manifest that parseManifest takes is one that Distribution refuses with
// a 4xx or whose references it can look up: no digest that makes it answer 500, and no
// negative size, which no client can pull.
func FuzzManifest(f *testing.F) {
	cfg := `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}`
	layer := `{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}`
	for i, s := range []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` + cfg + `,"layers":[` + layer + `]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + layer + `]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",` + cfg + `,"layers":[]}`,
		`{"schemaVersion":2,` + cfg + `,"subject":` + layer + `}`,
		`{"schemaVersion":1}`,
	} {
		f.Add([]byte(s), uint8(i))
	}
	f.Fuzz(func(t *testing.T, body []byte, kind uint8) {
		fields, err := parseManifest(body)
		if err != nil {
			return
		}
		if s := fields.Subject; s != nil && s.Digest.Validate() != nil {
			t.Errorf("manifest %q passes with the subject %q", body, s.Digest)
		}
		m, _, err := distribution.UnmarshalManifest(manifestTypes[int(kind)%len(manifestTypes)], body)
		if err != nil {
			return // MANIFEST_INVALID
		}
		for _, d := range m.References() {
			// Distribution answers DIGEST_INVALID for a reference of an invalid format
			// (one missing is ""), and 500 for any other invalid digest.
			if err := d.Digest.Validate(); err != nil && !errors.Is(err, digest.ErrDigestInvalidFormat) {
				t.Errorf("manifest %q passes, and Distribution answers 500 for its reference %q: %v", body, d.Digest, err)
			}
			if d.Size < 0 {
				t.Errorf("manifest %q passes with a reference of size %d", body, d.Size)
			}
		}
	})
}
