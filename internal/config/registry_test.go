package config

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/sirupsen/logrus"
)

// TestParseRegistryAsDistribution checks that parseRegistry gives what
// configuration.Parse gives, defaults and REGISTRY_* overrides included.
func TestParseRegistryAsDistribution(t *testing.T) {
	t.Setenv("REGISTRY_HTTP_SECRET", "from-env")
	t.Setenv("REGISTRY_LOG_LEVEL", "warn")
	for _, doc := range []string{
		"version: 0.1\nstorage: {ipfs: {}}\n",
		"version: 0.1\nloglevel: debug\nstorage: {ipfs: {}}\ncatalog: {maxentries: 5}\ntags: {maxtags: 7}\n",
		originalStyle,
		"version: 0.1\nstorage: {ipfs: {}}\ntags: {maxtags: -1}\n",
		"version: 0.1\n",
		"version: 0.2\nstorage: {ipfs: {}}\n",
	} {
		want, wantErr := configuration.Parse(strings.NewReader(doc))
		got, err := parseRegistry([]byte(doc))
		if (err != nil) != (wantErr != nil) {
			t.Errorf("parseRegistry(%q) = %v, configuration.Parse = %v", doc, err, wantErr)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("parseRegistry(%q) =\n%+v\nconfiguration.Parse gives\n%+v", doc, got, want)
		}
	}
}

// TestConfigurationPathNoWarning checks that REGISTRY_CONFIGURATION_PATH, which names the
// file, is not taken for a key that does not exist, while a misspelt key still is.
func TestConfigurationPathNoWarning(t *testing.T) {
	var logged bytes.Buffer
	logrus.SetOutput(&logged)
	t.Cleanup(func() { logrus.SetOutput(os.Stderr) })

	t.Setenv("REGISTRY_CONFIGURATION_PATH", "/etc/disco/config.yaml")
	if _, err := Parse(nil, env(nil)); err != nil {
		t.Fatal(err)
	}
	if logged.Len() > 0 {
		t.Errorf("with REGISTRY_CONFIGURATION_PATH set, the parser logged:\n%s", &logged)
	}

	t.Setenv("REGISTRY_HTTP_SECRETT", "x")
	if _, err := Parse(nil, env(nil)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logged.String(), "REGISTRY_HTTP_SECRETT") {
		t.Errorf("a misspelt REGISTRY_HTTP_SECRETT was not warned about; logged %q", &logged)
	}
}
