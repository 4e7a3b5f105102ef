package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
)

// badRequest is a request a registry must refuse.
type badRequest struct {
	what   string
	method string
	path   string // below the registry's URL; a full URL when it starts with http
	body   []byte
	header []string // pairs of names and values
}

// TestReliabilityBadInput sends a table of malformed requests, round after round: bad
// names, tags, digests, upload ids, Content-Range headers, bodies, manifests, CIDs with
// bad multihashes, oversized things. Every answer must be a 4xx with an OCI error body;
// a 5xx fails the test, and so does anything else. The image stored before is untouched.
func TestReliabilityBadInput(t *testing.T) {
	t.Parallel()
	d := startDisco(t, discoOptions{YAML: "disco: {clonetimeout: 2s}"})
	img := randomImage(t, 64<<10, 1)
	h := pushImage(t, d, "bad/good", "v1", img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layer := m.Layers[0].Digest.String()

	var tried, refused, fivexx, other int
	rounds(1, func(round int) bool {
		for _, r := range badRequests(t, d, h.String(), layer) {
			tried++
			u := r.path
			if !strings.HasPrefix(u, "http") {
				u = d.URL(r.path)
			}
			res := send(t, r.method, u, r.body, r.header...)
			got := res.reply()
			switch {
			case got.status >= 400 && got.status < 500 && got.code != "":
				refused++
			case got.status >= 500:
				fivexx++
				t.Errorf("%s: %s %s: %d %s", r.what, r.method, r.path, got.status, res.body)
			default:
				other++
				t.Errorf("%s: %s %s: %d %q, want a 4xx with an OCI error body; body %.200q",
					r.what, r.method, r.path, got.status, got.code, res.body)
			}
		}
		return !t.Failed()
	})
	checkImage(t, d, "bad/good:v1", img)
	figures(t, "bad input: %d malformed requests, %d refused with a 4xx and an OCI error, %d 5xx, %d other answers",
		tried, refused, fivexx, other)
}

// badRequests returns the table, for a registry holding the manifest good in bad/good
// with the layer layer.
func badRequests(t *testing.T, d *Disco, good, layer string) []badRequest {
	t.Helper()
	upload := func() string { return startUpload(t, d, "bad/good") }
	patched := func() string {
		loc := startUpload(t, d, "bad/good")
		res := send(t, http.MethodPatch, loc, []byte("0123456789"),
			"Content-Type", "application/octet-stream", "Content-Range", "0-9")
		if res.status != http.StatusAccepted {
			t.Fatalf("PATCH 0-9: %d %s", res.status, res.body)
		}
		return location(t, d, res)
	}
	octet := []string{"Content-Type", "application/octet-stream"}
	oci := []string{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}
	with := func(h []string, more ...string) []string { return append(append([]string{}, h...), more...) }
	unknown := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("no such blob")))
	cfgRef := fmt.Sprintf(`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2}`, unknown)

	var reqs []badRequest
	add := func(what, method, path string, body []byte, header ...string) {
		reqs = append(reqs, badRequest{what, method, path, body, header})
	}

	// Names.
	for _, name := range []string{
		"bad/GOOD", "BAD/good", "-bad/good", "bad-/good", "bad//good", "bad/./good", "bad/../good",
		"bad/%2e%2e/good", "bad.", "_bad", "bad__-good", "b%00d", "bäd",
		strings.Repeat("a", 256), strings.Repeat("a/", 128) + "a",
	} {
		add("name "+trim(name), http.MethodGet, "/v2/"+name+"/manifests/v1", nil)
		add("name "+trim(name)+", upload", http.MethodPost, "/v2/"+name+"/blobs/uploads/", nil)
		add("name "+trim(name)+", tags", http.MethodGet, "/v2/"+name+"/tags/list", nil)
	}
	// Tags and references.
	for _, tag := range []string{
		"-v1", ".v1", strings.Repeat("t", 129), "v1%20", "v%00", "ta%2Fg", "täg",
	} {
		add("tag "+trim(tag), http.MethodGet, "/v2/bad/good/manifests/"+tag, nil)
		add("tag "+trim(tag)+", put", http.MethodPut, "/v2/bad/good/manifests/"+tag, []byte(`{}`), oci...)
	}
	// Digests.
	for _, dg := range []string{
		"sha256:abc", "sha256:" + strings.Repeat("A", 64), "sha256:" + strings.Repeat("g", 64),
		"sha256:" + strings.Repeat("a", 65), "md5:" + strings.Repeat("a", 32), "sha512:" + strings.Repeat("a", 64),
		"sha256:", ":" + strings.Repeat("a", 64), "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
	} {
		add("digest "+trim(dg), http.MethodGet, "/v2/bad/good/blobs/"+dg, nil)
		add("digest "+trim(dg)+", manifest", http.MethodGet, "/v2/bad/good/manifests/"+dg, nil)
		add("digest "+trim(dg)+", delete", http.MethodDelete, "/v2/bad/good/manifests/"+dg, nil)
		add("digest "+trim(dg)+", referrers", http.MethodGet, "/v2/bad/good/referrers/"+dg, nil)
		add("digest "+trim(dg)+", closing PUT", http.MethodPut, withDigest(upload(), dg), []byte("x"), octet...)
		// A mount of a bad digest is not refused: the spec has the registry start an
		// upload instead, as when the blob is not there.
	}
	add("blob unknown", http.MethodGet, "/v2/bad/good/blobs/"+unknown, nil)

	// Upload ids.
	for _, id := range []string{
		"not-a-uuid", "00000000-0000-4000-8000-000000000000", "..%2F..%2Fx", strings.Repeat("f", 300), "%00",
	} {
		for _, method := range []string{http.MethodGet, http.MethodPatch, http.MethodPut, http.MethodDelete} {
			add("upload id "+trim(id)+", "+method, method, "/v2/bad/good/blobs/uploads/"+id+"?digest="+layer, []byte("x"), octet...)
		}
	}
	// Content-Range.
	for _, cr := range []string{
		"bytes=0-9", "0-", "-9", "9-0", "0-99999999999999999999999", "a-b", "0-9, 10-19", "-1--5", "0-9/10",
		"bytes 0-9/10", "bytes 10-19", "20-29", "0-0", "10-9223372036854775808",
	} {
		add("Content-Range "+cr, http.MethodPatch, patched(), []byte("0123456789"), with(octet, "Content-Range", cr)...)
	}
	add("Content-Range longer than the body", http.MethodPatch, upload(), []byte("0123456789"),
		with(octet, "Content-Range", "0-99")...)
	add("closing PUT of other bytes", http.MethodPut, withDigest(upload(), layer), []byte("not the layer"), octet...)
	// Blob reads.
	for _, rg := range []string{"bytes=999999999-", "bytes=5-1"} {
		add("Range "+rg, http.MethodGet, "/v2/bad/good/blobs/"+layer, nil, "Range", rg)
	}

	// Manifests.
	for _, mf := range []struct{ what, body string }{
		{"not JSON", `{"schemaVersion": 2, "layers": [`},
		{"empty", ``},
		{"an array", `[]`},
		{"null", `null`},
		{"schema version 1", `{"schemaVersion": 1}`},
		{"schema version 3", `{"schemaVersion": 3, "mediaType": "application/vnd.oci.image.manifest.v1+json"}`},
		{"schema version a string", `{"schemaVersion": "2"}`},
		{"no config", `{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}`},
		{"a config of an unknown blob", `{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", ` + cfgRef + `, "layers": []}`},
		{"a bad config digest", `{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"digest": "sha256:zz", "size": 2}, "layers": []}`},
		{"a negative size", `{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "` + layer + `", "size": -1}, "layers": []}`},
		{"a bad subject", `{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", ` + cfgRef + `, "layers": [], "subject": {"digest": "nope"}}`},
		{"an index of unknown manifests", `{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "` + unknown + `", "size": 2}]}`},
		{"an index with a bad digest", `{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{"digest": "sha256:1", "size": 2}]}`},
		{"deeply nested", strings.Repeat("[", 100000) + strings.Repeat("]", 100000)},
		{"a mediaType other than its Content-Type", `{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}`},
		{"10000 unknown layers", manyLayers(cfgRef, unknown, 10000)},
	} {
		add("manifest "+mf.what, http.MethodPut, "/v2/bad/good/manifests/bad", []byte(mf.body), oci...)
	}
	add("manifest of an unknown media type", http.MethodPut, "/v2/bad/good/manifests/bad", []byte(`{"schemaVersion": 2}`),
		"Content-Type", "application/x-nonsense")
	add("manifest larger than 4 MiB", http.MethodPut, "/v2/bad/good/manifests/big",
		append([]byte(`{"schemaVersion": 2, "annotations": {"a": "`), append(bytes.Repeat([]byte("a"), 5<<20), `"}}`...)...), oci...)
	add("manifest under the digest of another", http.MethodPut, "/v2/bad/good/manifests/"+good,
		[]byte(`{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}`),
		"Content-Type", "application/vnd.oci.image.index.v1+json")
	add("manifest unknown", http.MethodGet, "/v2/bad/good/manifests/nope", nil)
	add("delete of an unknown tag", http.MethodDelete, "/v2/bad/good/manifests/nope", nil)

	// CIDs: names that are CIDs no Disco takes, and writes to names Disco gives.
	for _, c := range []struct{ what, name string }{
		{"identity multihash", cidName(t, cid.DagProtobuf, multihash.IDENTITY, []byte("hi"))},
		{"long identity multihash", cidName(t, cid.DagProtobuf, multihash.IDENTITY, bytes.Repeat([]byte("x"), 200))},
		{"md5 multihash", cidName(t, cid.DagProtobuf, multihash.MD5, []byte("x"))},
		{"sha1 multihash", cidName(t, cid.DagProtobuf, multihash.SHA1, []byte("x"))},
		{"raw codec", cidName(t, cid.Raw, multihash.SHA2_256, []byte("x"))},
		{"dag-cbor codec", cidName(t, cid.DagCBOR, multihash.SHA2_256, []byte("x"))},
		{"truncated", cidName(t, cid.DagProtobuf, multihash.SHA2_256, []byte("x"))[:40]},
		{"bad base32", "bafybeig" + strings.Repeat("1", 51)},
		{"CID v0", "qmyjnzz6qfxpt7gakhvwr5xtt5jhyjvbf6bqjmetrrdbzgk"},
	} {
		add("CID with "+c.what, http.MethodGet, "/v2/"+c.name+"/manifests/latest", nil)
		add("CID with "+c.what+", tags", http.MethodGet, "/v2/"+c.name+"/tags/list", nil)
	}
	hex := strings.TrimPrefix(good, "sha256:")
	add("push to a digest name", http.MethodPut, "/v2/"+hex+"/manifests/v2", []byte(`{}`), oci...)
	add("upload to a digest name", http.MethodPost, "/v2/"+hex+"/blobs/uploads/", nil)
	add("upload below a digest name", http.MethodPost, "/v2/"+hex+"/sub/blobs/uploads/", nil)

	// The rest of the API.
	add("catalog n=-1", http.MethodGet, "/v2/_catalog?n=-1", nil)
	add("catalog n not a number", http.MethodGet, "/v2/_catalog?n=x", nil)
	add("tags n=-1", http.MethodGet, "/v2/bad/good/tags/list?n=-1", nil)
	add("tags of an unknown repository", http.MethodGet, "/v2/bad/nope/tags/list", nil)
	add("an unknown endpoint", http.MethodGet, "/v2/bad/good/nope", nil)
	add("a method the endpoint does not take", http.MethodPatch, "/v2/bad/good/manifests/v1", nil)
	add("a method the catalog does not take", http.MethodDelete, "/v2/_catalog", nil)
	add("referrers by POST", http.MethodPost, "/v2/bad/good/referrers/"+good, nil)
	return reqs
}

// manyLayers returns an OCI manifest with n layers of the blob d, which is unknown.
func manyLayers(cfgRef, d string, n int) string {
	layers := make([]string, n)
	for i := range layers {
		layers[i] = fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, d, i+1)
	}
	b, _ := json.Marshal(json.RawMessage(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		cfgRef + `,"layers":[` + strings.Join(layers, ",") + `]}`))
	return string(b)
}

// cidName returns, in lowercase base32 as a repository name would be, the CID v1 of
// codec and of the multihash of type mhType of b.
func cidName(t *testing.T, codec uint64, mhType uint64, b []byte) string {
	t.Helper()
	mh, err := multihash.Sum(b, mhType, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(codec, mh).String()
}

// trim shortens what a test case names for its message.
func trim(s string) string {
	if len(s) > 24 {
		return fmt.Sprintf("%s... (%d bytes)", s[:16], len(s))
	}
	return s
}
