package mirror_test

import (
	"strings"
	"testing"

	"github.com/discoregistry/disco/internal/mirror"
)

// TestURLCredentialsRefused: a mirror refuses an upstream URL with credentials in it,
// which it would show in messages and hash into the name of its peers' protocol, and does
// not repeat them in its error.
func TestURLCredentialsRefused(t *testing.T) {
	for _, remote := range []string{"https://puller:pw-Zq81x@registry.example.com", "https://puller:pw Zq81x@registry.example.com"} {
		m, err := mirror.New(mirror.Options{RemoteURL: remote})
		if err == nil {
			m.Close()
			t.Errorf("a mirror of %s started", remote)
		} else if strings.Contains(err.Error(), "Zq81x") {
			t.Errorf("a mirror of %s: the error repeats the password: %v", remote, err)
		}
	}
}
