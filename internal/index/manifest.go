package index

import (
	"encoding/json"
	"fmt"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// ManifestFields are the fields of any manifest (OCI or Docker, image, index or
// artifact) that the index and the page read.
type ManifestFields struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *v1.Descriptor    `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Manifests     []v1.Descriptor   `json:"manifests"`
	Subject       *v1.Descriptor    `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// Kind is what a manifest holds.
type Kind string

const (
	KindImage    Kind = "image"
	KindIndex    Kind = "index"
	KindArtifact Kind = "artifact"
)

// Media types Disco meets that image-spec does not name.
const (
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerConfig       = "application/vnd.docker.container.image.v1+json"
)

// ParseManifest decodes a manifest's payload.
func ParseManifest(payload []byte) (ManifestFields, error) {
	var m ManifestFields
	if err := json.Unmarshal(payload, &m); err != nil {
		return m, fmt.Errorf("manifest: %w", err)
	}
	if m.MediaType == "" { // optional in OCI manifests
		m.MediaType = v1.MediaTypeImageManifest
		if m.Config == nil {
			m.MediaType = v1.MediaTypeImageIndex
		}
	}
	return m, nil
}

// Kind says whether m is an image, an index or another artifact.
func (m ManifestFields) Kind() Kind {
	switch {
	case m.MediaType == v1.MediaTypeImageIndex || m.MediaType == dockerManifestList || m.Manifests != nil && m.Config == nil:
		return KindIndex
	case m.ArtifactType != "":
		return KindArtifact
	case m.Config != nil && m.Config.MediaType != v1.MediaTypeImageConfig && m.Config.MediaType != dockerConfig:
		return KindArtifact
	}
	return KindImage
}

// Type is the artifact type of an artifact: its artifactType, else its config's media
// type, as the referrers API gives it. It is empty for an image or an index without one.
func (m ManifestFields) Type() string {
	if m.ArtifactType != "" || m.Kind() != KindArtifact {
		return m.ArtifactType
	}
	return m.Config.MediaType
}
