package global

import (
	"context"
	"encoding/json"
	"maps"
	"path"
	"regexp"
	"strings"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/ipfs/boxo/verifcid"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/layout"
)

// The fuzz targets here check what Disco takes from the network, and from names, against
// what it then does with it.

const seedCID = "bafybeihho3ewe6qvqhcn4vs6ycn7uycp3mw7muivpzu6pxscf7kqdblv54"

var seedDigest = digest.FromString("seed")

// FuzzGlobalName: a CID name is the CID's own string and a repository name Distribution
// takes; a digest name too; a name is below a global name exactly when its first
// component is one, so that ReadOnly guards every repository inside a global one.
func FuzzGlobalName(f *testing.F) {
	for _, s := range []string{seedCID, seedCID + "/x", "BAFYBEIHHO3EWE6QVQHCN4VS6YCN7UYCP3MW7MUIVPZU6PXSCF7KQDBLV54",
		seedDigest.Encoded(), seedDigest.Encoded() + "/chart", "bafkqaaa", "b", "library/busybox", "f01701220" + seedDigest.Encoded()} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, isCID := ParseCIDName(name)
		if isCID {
			if c.String() != name || c.Version() != 1 {
				t.Errorf("ParseCIDName(%q) = %s (v%d), another spelling", name, c, c.Version())
			}
			if _, err := reference.WithName(name); err != nil {
				t.Errorf("CID name %q is no repository name for Distribution: %v", name, err)
			}
		}
		if IsDigestName(name) {
			if _, err := reference.WithName(name); err != nil {
				t.Errorf("digest name %q is no repository name for Distribution: %v", name, err)
			}
			if digest.SHA256.Validate(name) != nil && digest.SHA512.Validate(name) != nil {
				t.Errorf("digest name %q is no sha256 or sha512 hex", name)
			}
		}
		if IsGlobalName(name) != (isCID || IsDigestName(name)) {
			t.Errorf("IsGlobalName(%q) = %v", name, IsGlobalName(name))
		}
		first, _, _ := strings.Cut(name, "/")
		if UnderGlobalName(name) != IsGlobalName(first) {
			t.Errorf("UnderGlobalName(%q) = %v, but IsGlobalName(%q) = %v", name, UnderGlobalName(name), first, IsGlobalName(first))
		}
		if IsGlobalName(name) && !UnderGlobalName(name+"/x") {
			t.Errorf("%q/x is not below the global name %q", name, name)
		}
	})
}

// FuzzCID: checkCID takes only dag-pb CIDs whose hash is a cryptographic one IPFS trusts,
// never the identity hash (content inlined in the CID, which names no fetched block), and
// a CID v1 it takes is a repository name that ParseCIDName reads back.
func FuzzCID(f *testing.F) {
	c, _ := cid.Decode(seedCID)
	f.Add(c.Bytes())
	id, _ := mh.Sum([]byte("hi"), mh.IDENTITY, -1)
	f.Add(cid.NewCidV1(cid.DagProtobuf, id).Bytes())
	sha1, _ := mh.Sum([]byte("x"), mh.SHA1, -1)
	f.Add(cid.NewCidV1(cid.DagProtobuf, sha1).Bytes())
	f.Add(cid.NewCidV1(cid.Raw, c.Hash()).Bytes())
	f.Add(cid.NewCidV0(c.Hash()).Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := cid.Cast(b)
		if err != nil {
			return
		}
		if checkCID(c) != nil {
			return
		}
		dec, err := mh.Decode(c.Hash())
		switch {
		case err != nil:
			t.Errorf("checkCID takes %s, whose multihash does not decode: %v", c, err)
		case c.Type() != cid.DagProtobuf:
			t.Errorf("checkCID takes %s, of codec %#x", c, c.Type())
		case dec.Code == mh.IDENTITY:
			t.Errorf("checkCID takes %s, of the identity hash", c)
		case verifcid.ValidateCid(verifcid.DefaultAllowlist, c) != nil:
			t.Errorf("checkCID takes %s, which IPFS does not trust", c)
		}
		if c.Version() == 1 {
			if got, ok := ParseCIDName(c.String()); !ok || got != c {
				t.Errorf("ParseCIDName(%s) = %s, %v", c, got, ok)
			}
		}
	})
}

// FuzzDiscoJSON: a disco.json that parses maps valid digests to defined CIDs, and written
// again as Disco writes one, parses to the same map.
func FuzzDiscoJSON(f *testing.F) {
	f.Add([]byte(`{"blobs":[{"digest":"` + seedDigest.Encoded() + `","cid":"` + seedCID + `"}]}`))
	f.Add([]byte(`{"blobs":[{"digest":"sha512:` + strings.Repeat("a", 128) + `","cid":"` + seedCID + `"}]}`))
	f.Add([]byte(`{"blobs":[]}`))
	f.Add([]byte(`{"blobs":[{"digest":"x","cid":"y"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseDiscoJSON(b)
		if err != nil {
			return
		}
		if len(m) == 0 {
			t.Errorf("parseDiscoJSON(%q) gives no blobs", b)
		}
		var again discoJSON
		for d, c := range m {
			if d.Validate() != nil || !c.Defined() {
				t.Errorf("parseDiscoJSON(%q) maps %q to %s", b, d, c)
			}
			again.add(d, c)
		}
		out, err := json.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := parseDiscoJSON(out)
		if err != nil || !maps.Equal(m, m2) {
			t.Errorf("disco.json %q parses to %v; written again, %q parses to %v (%v)", b, m, out, m2, err)
		}
	})
}

var tagName = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)

// FuzzCheckEntry: checkEntry takes only entries made of path elements, at paths inside
// the repository directory that Distribution's storage takes, and for a link file, one
// whose place record can read; tags it takes are tags for Distribution.
func FuzzCheckEntry(f *testing.F) {
	f.Add("_manifests", "tags", "latest", "current", "link", "", "", uint8(5), false)
	f.Add("_manifests", "revisions", "sha256", seedDigest.Encoded(), "link", "", "", uint8(5), false)
	f.Add("_manifests", "tags", "v1", "index", "sha256", seedDigest.Encoded(), "link", uint8(7), false)
	f.Add("_layers", "sha512", strings.Repeat("a", 128), "link", "", "", "", uint8(4), false)
	f.Add("_uploads", "", "", "", "", "", "", uint8(1), true)
	f.Add("disco.json", "", "", "", "", "", "", uint8(1), false)
	f.Add("_layers", ".", "..", "", "a/b", "", "", uint8(4), true)
	f.Add("_manifests", "tags", "..", "current", "link", "", "", uint8(5), false)
	f.Add("_manifests", "tags", "a/b", "index", "sha256", seedDigest.Encoded(), "link", uint8(7), false)
	f.Fuzz(func(t *testing.T, a, b, c, d, e, g, h string, n uint8, isDir bool) {
		s := []string{a, b, c, d, e, g, h}[:n%8]
		if checkEntry(s, isDir) != nil {
			return
		}
		for _, name := range s {
			if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
				t.Fatalf("checkEntry takes %q, with the element %q", s, name)
			}
		}
		rel := strings.Join(s, "/")
		if p := layout.Repository("app") + "/" + rel; len(s) > 0 && (path.Clean(p) != p || !storagedriver.PathRegexp.MatchString(p)) {
			t.Errorf("checkEntry takes %q, at %s, which Distribution's storage does not take", s, p)
		}
		if len(s) >= 3 && s[1] == "tags" && !tagName.MatchString(s[2]) {
			t.Errorf("checkEntry takes the tag %q, which Distribution does not take", s[2])
		}
		if !isDir && len(s) > 0 && s[len(s)-1] == "link" {
			l := &repoLinks{revisions: map[digest.Digest]bool{}, layers: map[digest.Digest]bool{},
				tags: map[string]digest.Digest{}, aliases: map[digest.Digest]digest.Digest{}}
			l.record(rel, []byte(seedDigest))
			l.check(map[digest.Digest]cid.Cid{})
		}
	})
}

// FuzzWalkImage: walkImage on any manifest, whose children are any other, ends; what it
// returns starts with the manifest, names each digest once, each valid, and no more than
// the bounds allow.
func FuzzWalkImage(f *testing.F) {
	layer := `{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + seedDigest.String() + `","size":2}`
	index := `{"schemaVersion":2,"manifests":[` + layer + `,{"digest":"` + digest.FromString("child").String() + `"}]}`
	image := `{"schemaVersion":2,"config":` + layer + `,"layers":[` + layer + `]}`
	f.Add([]byte(image), []byte(image))
	f.Add([]byte(index), []byte(image))
	f.Add([]byte(index), []byte(index))
	f.Add([]byte(`{"manifests":[{"digest":"sha256:1"}]}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, top, child []byte) {
		topDigest := digest.FromBytes(top)
		reads := 0
		img, err := walkImage(context.Background(), topDigest, func(_ context.Context, d digest.Digest) ([]byte, error) {
			if reads++; reads > maxReferences+2 {
				t.Fatalf("walkImage read %d manifests", reads)
			}
			if d == topDigest {
				return top, nil
			}
			return child, nil
		})
		if err != nil {
			return
		}
		if len(img.manifests) == 0 || img.manifests[0] != topDigest {
			t.Errorf("walkImage gives manifests %v, not starting with %s", img.manifests, topDigest)
		}
		seen := map[digest.Digest]bool{}
		for _, d := range img.manifests {
			if seen[d] || d.Validate() != nil {
				t.Errorf("walkImage gives the manifest %q twice, or invalid", d)
			}
			seen[d] = true
		}
		for _, b := range img.blobs {
			if seen[b.Digest] || b.Digest.Validate() != nil {
				t.Errorf("walkImage gives the blob %q twice, or invalid", b.Digest)
			}
			seen[b.Digest] = true
		}
		if len(seen) > maxReferences+2 {
			t.Errorf("walkImage gives %d references, more than %d", len(seen), maxReferences)
		}
	})
}
