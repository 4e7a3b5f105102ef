package server

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/storage"
)

// plainRegistry returns the options of the registry Distribution builds from reg, but for
// its blob descriptor cache, when reg sets one; nil otherwise. Distribution's caches
// refuse repositories named by a digest's hex, which global addressing then reaches
// through a registry with these options. They follow handlers.NewApp.
func plainRegistry(reg *configuration.Configuration) ([]storage.RegistryOption, error) {
	if c := reg.Storage["cache"]; c == nil || c["blobdescriptor"] == nil && c["layerinfo"] == nil {
		return nil, nil
	}
	opts := []storage.RegistryOption{}
	if d := reg.Storage["delete"]; d != nil && d["enabled"] == true {
		opts = append(opts, storage.EnableDelete)
	}
	if p := reg.Storage.TagParameters(); p != nil {
		if l, ok := p["concurrencylimit"].(int); ok && l >= 0 {
			opts = append(opts, storage.TagLookupConcurrencyLimit(l))
		}
	}
	if r := reg.Storage["redirect"]; r == nil || r["disable"] != true {
		opts = append(opts, storage.EnableRedirect)
	}
	v := reg.Validation
	if !v.Enabled && v.Disabled {
		return opts, nil
	}
	urls := v.Manifests.URLs
	if len(urls.Allow) == 0 && len(urls.Deny) == 0 {
		opts = append(opts, storage.ManifestURLsAllowRegexp(regexp.MustCompile("^$")))
	}
	for _, list := range []struct {
		res []string
		opt func(*regexp.Regexp) storage.RegistryOption
	}{{urls.Allow, storage.ManifestURLsAllowRegexp}, {urls.Deny, storage.ManifestURLsDenyRegexp}} {
		if len(list.res) == 0 {
			continue
		}
		var parts []string
		for _, s := range list.res {
			if _, err := regexp.Compile(s); err != nil {
				return nil, fmt.Errorf("validation.manifests.urls: %w", err)
			}
			parts = append(parts, "(?:"+s+")")
		}
		opts = append(opts, list.opt(regexp.MustCompile(strings.Join(parts, "|"))))
	}
	switch v.Manifests.Indexes.Platforms {
	case "list":
		opts = append(opts, storage.EnableValidateImageIndexImagesExist)
		for _, p := range v.Manifests.Indexes.PlatformList {
			opts = append(opts, storage.AddValidateImageIndexImagesExistPlatform(p.Architecture, p.OS))
		}
	case "none":
	default:
		opts = append(opts, storage.EnableValidateImageIndexImagesExist)
	}
	return opts, nil
}
