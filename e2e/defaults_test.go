package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoConfig runs Disco as on a fresh machine: an empty HOME, no configuration file,
// no REGISTRY_CONFIGURATION_PATH, no DISCO_PORT. It serves on port 1970 and its node
// listens on 127.0.0.1:4001. The test does not call t.Parallel: no other test uses those
// ports, and Go starts the parallel tests only once the sequential ones have finished.
func TestNoConfig(t *testing.T) {
	for _, addr := range []string{":1970", "127.0.0.1:4001"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("port %s is taken by another process (%v); Disco's built-in defaults need "+
				"ports 1970 and 4001, stop whatever holds it and run the test again", addr, err)
		}
		l.Close()
	}
	d := startDisco(t, discoOptions{NoConfig: true})
	if !strings.Contains(d.logFrom(0), "built-in defaults") {
		t.Errorf("Disco's log does not say it runs on built-in defaults:\n%s", d.logTail())
	}
	if _, err := os.Stat(filepath.Join(d.Home, ".disco", "ipfs")); err != nil {
		t.Errorf("Disco did not create its IPFS node in ~/.disco/ipfs: %v", err)
	}
	d.PeerAddr() // the node's address is 127.0.0.1:4001

	img := randomImage(t, 1<<20, 1)
	digest := pushImage(t, d, "e2e/defaults", "v1", img)
	checkImage(t, d, "e2e/defaults@"+digest.String(), img)
	d.Stop()
}
