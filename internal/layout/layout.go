// Package layout knows where the Distribution library keeps things in its storage: the
// paths of blobs, repositories, tags and links, as storage driver paths.
package layout

import (
	"path"

	"github.com/opencontainers/go-digest"
)

const v2 = "/docker/registry/v2"

// Repositories is the directory holding all repositories.
func Repositories() string { return path.Join(v2, "repositories") }

// Repository is the directory of the named repository.
func Repository(name string) string { return path.Join(Repositories(), name) }

// Blob is the data file of the blob d.
func Blob(d digest.Digest) string {
	return path.Join(v2, "blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded(), "data")
}

// Paths inside a repository directory.

// LayerLink links a config or layer blob into a repository.
func LayerLink(d digest.Digest) string {
	return path.Join("_layers", d.Algorithm().String(), d.Encoded(), "link")
}

// RevisionLink links a manifest into a repository.
func RevisionLink(d digest.Digest) string {
	return path.Join("_manifests", "revisions", d.Algorithm().String(), d.Encoded(), "link")
}

// TagLink points a tag at a manifest.
func TagLink(tag string) string { return path.Join("_manifests", "tags", tag, "current", "link") }

// TagIndexLink records that a tag has pointed at the manifest d.
func TagIndexLink(tag string, d digest.Digest) string {
	return path.Join("_manifests", "tags", tag, "index", d.Algorithm().String(), d.Encoded(), "link")
}

// Referrers is the directory of links to the manifests that name subject as their subject.
// Distribution keeps no such index; Disco does, for the referrers API.
func Referrers(subject digest.Digest) string {
	return path.Join("_referrers", subject.Algorithm().String(), subject.Encoded())
}

// ReferrerLink links the manifest d into the referrers of subject.
func ReferrerLink(subject, d digest.Digest) string {
	return path.Join(Referrers(subject), d.Algorithm().String(), d.Encoded(), "link")
}
