// Package global makes pushed images globally addressable and pulls them back by CID.
//
// After a tagged push, an image is filed under two more repositories: one named by its
// manifest digest, one named by the CID of an IPFS directory that holds exactly what is
// needed to pull it (Distribution's repository layout for that manifest and disco.json,
// which maps every blob to its CID). Any Disco whose node reaches the content pulls the
// image by that CID. Both names are read-only.
package global

import (
	"regexp"
	"strings"

	"github.com/ipfs/go-cid"
)

// digestName matches repository names that are sha256 or sha512 digests in hex.
var digestName = regexp.MustCompile(`^([0-9a-f]{64}|[0-9a-f]{128})$`)

// ParseCIDName returns the CID a repository name spells, if it is a CID v1 in base32
// (the only form that is a valid repository name).
func ParseCIDName(name string) (cid.Cid, bool) {
	if len(name) < 10 || name[0] != 'b' {
		return cid.Undef, false
	}
	c, err := cid.Decode(name)
	if err != nil || c.Version() != 1 || c.String() != name {
		return cid.Undef, false
	}
	return c, true
}

// IsDigestName reports whether a repository name is a manifest digest in hex.
func IsDigestName(name string) bool { return digestName.MatchString(name) }

// IsGlobalName reports whether a repository name is one Disco gives: a digest or a CID.
// Such repositories are read-only.
func IsGlobalName(name string) bool {
	_, isCID := ParseCIDName(name)
	return isCID || IsDigestName(name)
}

// UnderGlobalName reports whether a repository name is a global name or below one
// ("<cid>/chart"). The names below are Disco's too: a repository there would be written
// inside the global one's directory, changing what a read-only name names.
func UnderGlobalName(name string) bool {
	first, _, _ := strings.Cut(name, "/")
	return IsGlobalName(first)
}
