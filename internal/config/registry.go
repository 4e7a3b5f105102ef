//lint:file-ignore SA1019 the deprecated loglevel key is moved to log.level, as configuration.Parse does

package config

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/distribution/distribution/v3/configuration"
)

// distribution is Distribution's configuration under a name that leaves the field name
// Configuration free in registryFile.
type distribution = configuration.Configuration

// registryFile is what Distribution's parser decodes a file into. Its parser applies every
// REGISTRY_* variable of the process to the field it names, and warns about each one that
// names none. REGISTRY_CONFIGURATION_PATH names the file itself, so without a field to land
// in, every start of a Disco configured as the README says warned that it was ignored.
type registryFile struct {
	distribution `yaml:",inline"`

	Configuration struct {
		Path string
	} `yaml:"-"`
}

// Defaults configuration.Parse sets, which are not exported.
const (
	defaultMaxEntries = 1000
	defaultMaxTags    = 1000
)

// parseRegistry parses Distribution's part of a configuration file as
// configuration.Parse does, REGISTRY_* overrides included.
func parseRegistry(data []byte) (*configuration.Configuration, error) {
	p := configuration.NewParser("registry", []configuration.VersionedParseInfo{{
		Version:        configuration.MajorMinorVersion(0, 1),
		ParseAs:        reflect.TypeFor[registryFile](),
		ConversionFunc: registryDefaults,
	}})
	c := new(configuration.Configuration)
	if err := p.Parse(data, c); err != nil {
		return nil, err
	}
	return c, nil
}

// registryDefaults fills in what configuration.Parse fills in for version 0.1.
func registryDefaults(v any) (any, error) {
	f, ok := v.(*registryFile)
	if !ok {
		return nil, fmt.Errorf("expected *registryFile, got %T", v)
	}
	c := &f.distribution
	if c.Log.Level == "" {
		c.Log.Level = "info"
		if c.Loglevel != "" {
			c.Log.Level = c.Loglevel
		}
	}
	c.Loglevel = ""
	if c.Catalog.MaxEntries <= 0 {
		c.Catalog.MaxEntries = defaultMaxEntries
	}
	if c.Tags.MaxTags < 0 {
		return nil, errors.New("tags.maxtags: must not be negative")
	}
	if c.Tags.MaxTags == 0 {
		c.Tags.MaxTags = defaultMaxTags
	}
	if c.Storage.Type() == "" {
		return nil, errors.New("no storage configuration provided")
	}
	return c, nil
}
