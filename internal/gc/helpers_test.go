package gc_test

import (
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/discoregistry/disco/internal/disctest"
)

func parseRef(d *disctest.Disco, ref string) (name.Reference, error) {
	return name.ParseReference(d.Host+"/"+ref, name.Insecure)
}

func remoteGet(r name.Reference) (v1.Image, error) {
	img, err := remote.Image(r)
	if err != nil {
		return nil, err
	}
	_, err = img.RawManifest()
	return img, err
}
