package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	yaml "go.yaml.in/yaml/v3"
)

// file is the schema of a config file: Distribution's keys and Disco's.
type file struct {
	configuration.Configuration `yaml:",inline"`
	Disco                       Disco `yaml:"disco"`
	UI                          UI    `yaml:"ui"`
}

// storageSchema lists the keys under storage, which Distribution reads as free-form maps.
var storageSchema = map[string]reflect.Type{
	"ipfs": reflect.TypeFor[IPFS](),
	"maintenance": reflect.TypeFor[struct {
		UploadPurging struct {
			Enabled  bool   `yaml:"enabled"`
			Age      string `yaml:"age"`
			Interval string `yaml:"interval"`
			DryRun   bool   `yaml:"dryrun"`
		} `yaml:"uploadpurging"`
		ReadOnly struct {
			Enabled bool `yaml:"enabled"`
		} `yaml:"readonly"`
	}](),
	"delete": reflect.TypeFor[struct {
		Enabled bool `yaml:"enabled"`
	}](),
	"redirect": reflect.TypeFor[struct {
		Disable bool `yaml:"disable"`
	}](),
	"cache": reflect.TypeFor[struct {
		BlobDescriptor     string `yaml:"blobdescriptor"`
		BlobDescriptorSize int    `yaml:"blobdescriptorsize"`
		LayerInfo          string `yaml:"layerinfo"`
	}](),
	"tag": reflect.TypeFor[struct {
		ConcurrencyLimit int `yaml:"concurrencylimit"`
	}](),
}

// yamlV2Unmarshaler is how Distribution's types with their own YAML syntax are marked.
var yamlV2Unmarshaler = reflect.TypeFor[interface {
	UnmarshalYAML(func(any) error) error
}]()

// checkKeys returns an error naming every key in n that the schema t does not have, joined.
// Values of the wrong type are left for the decoders to report.
func checkKeys(n *yaml.Node, t reflect.Type, at string) error {
	if n.Kind == yaml.DocumentNode {
		var errs []error
		for _, c := range n.Content {
			errs = append(errs, checkKeys(c, t, at))
		}
		return errors.Join(errs...)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(yamlV2Unmarshaler) && t != reflect.TypeFor[configuration.Storage]() {
		return nil // a syntax of its own, checked by its decoder
	}
	if t == reflect.TypeFor[Bytes]() {
		if _, err := parseBytes(n.Value); err != nil {
			return fmt.Errorf("%s: %w (line %d)", at, err, n.Line)
		}
		return nil
	}
	if t == reflect.TypeFor[time.Duration]() {
		_, err := time.ParseDuration(n.Value)
		if _, ierr := strconv.ParseInt(n.Value, 10, 64); err != nil && ierr != nil && n.Kind == yaml.ScalarNode {
			return fmt.Errorf("%s: %q is not a duration such as 30s (line %d)", at, n.Value, n.Line)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int32, reflect.Uint, reflect.Uint32, reflect.Uint64:
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return fmt.Errorf("%s: %q is not a %s (line %d)", at, n.Value, t.Kind(), n.Line)
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		fields := fieldsOf(t)
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i].Value, n.Content[i+1]
			ft, ok := fields[key]
			if !ok {
				errs = append(errs, fmt.Errorf("unknown key %q (line %d)", join(at, key), n.Content[i].Line))
				continue
			}
			errs = append(errs, checkKeys(val, ft, join(at, key)))
		}
		return errors.Join(errs...)
	case reflect.Map:
		if t == reflect.TypeFor[configuration.Storage]() {
			return checkStorage(n, at)
		}
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, checkKeys(n.Content[i+1], t.Elem(), join(at, n.Content[i].Value)))
		}
		return errors.Join(errs...)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		var errs []error
		for i, c := range n.Content {
			errs = append(errs, checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", at, i)))
		}
		return errors.Join(errs...)
	}
	return nil
}

func checkStorage(n *yaml.Node, at string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: want a map with an ipfs section", at)
	}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		t, ok := storageSchema[key]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown key %q (line %d): Disco keeps the registry in IPFS; configure storage.ipfs",
				join(at, key), n.Content[i].Line))
			continue
		}
		errs = append(errs, checkKeys(n.Content[i+1], t, join(at, key)))
	}
	return errors.Join(errs...)
}

// fieldsOf maps the YAML names of t's fields to their types, following inline fields.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-":
		case strings.Contains(opts, "inline"):
			for k, v := range fieldsOf(f.Type) {
				out[k] = v
			}
		case name == "":
			out[strings.ToLower(f.Name)] = f.Type
		default:
			out[name] = f.Type
		}
	}
	return out
}

func join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}
