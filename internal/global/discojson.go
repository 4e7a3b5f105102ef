package global

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"
)

// discoJSON is the file in a CID repository that maps every blob of the image to its CID,
// in the original Disco's format: {"blobs":[{"digest":"<hex>","cid":"<cid>"}]}. Digests
// are sha256 hex as in the original; other algorithms are written "<algorithm>:<hex>".
type discoJSON struct {
	Blobs []blobCID `json:"blobs"`
}

type blobCID struct {
	Digest string `json:"digest"`
	CID    string `json:"cid"`
}

const discoJSONName = "disco.json"

// maxDiscoJSON bounds what Disco reads of a disco.json from the network.
const maxDiscoJSON = 4 << 20

// add lists d as c, once.
func (f *discoJSON) add(d digest.Digest, c cid.Cid) {
	s := d.String()
	if d.Algorithm() == digest.SHA256 {
		s = d.Encoded()
	}
	for _, b := range f.Blobs {
		if b.Digest == s {
			return
		}
	}
	f.Blobs = append(f.Blobs, blobCID{Digest: s, CID: c.String()})
}

// parseDiscoJSON parses and checks a disco.json, returning its map from digest to CID.
func parseDiscoJSON(b []byte) (map[digest.Digest]cid.Cid, error) {
	var f discoJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", discoJSONName, err)
	}
	if len(f.Blobs) == 0 {
		return nil, fmt.Errorf("%s lists no blobs", discoJSONName)
	}
	out := make(map[digest.Digest]cid.Cid, len(f.Blobs))
	for _, b := range f.Blobs {
		d, err := parseDigest(b.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", discoJSONName, err)
		}
		c, err := cid.Decode(b.CID)
		if err != nil {
			return nil, fmt.Errorf("%s: blob %s: %w", discoJSONName, d, err)
		}
		if prev, ok := out[d]; ok && prev != c {
			return nil, fmt.Errorf("%s maps %s to two CIDs", discoJSONName, d)
		}
		out[d] = c
	}
	return out, nil
}

func parseDigest(s string) (digest.Digest, error) {
	if !strings.Contains(s, ":") {
		s = "sha256:" + s
	}
	d, err := digest.Parse(s)
	if err != nil {
		return "", err
	}
	if !d.Algorithm().Available() {
		return "", errors.New("unsupported digest algorithm in " + s)
	}
	return d, nil
}
