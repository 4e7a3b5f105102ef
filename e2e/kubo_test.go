package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/discoregistry/disco/internal/kubotest"
)

// TestOriginalConfig starts Disco with the original Disco's default configuration file,
// copied as it is (testdata/original-config.yaml is forta-network/disco's
// config/default-config.yaml), against a Kubo daemon at the URL it names,
// http://localhost:5001, and goes through the original README's walkthrough with docker:
// push an image, find its CID through its digest repository, pull it by CID. Only
// environment variables keep the registry and its debug server on loopback.
func TestOriginalConfig(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:5001")
	if err != nil {
		t.Fatalf("port 5001, where the original's configuration expects a Kubo daemon, is taken (%v): free it and run the test again", err)
	}
	l.Close()
	k := kubotest.New(t)
	k.Run("config", "profile", "apply", "unixfs-v1-2025")
	k.SetAPIPort(5001)
	k.Start()
	debug := fmt.Sprintf("127.0.0.1:%d", kubotest.FreePorts(t, 1)[0])
	d := startDisco(t, discoOptions{File: "testdata/original-config.yaml",
		Env: []string{"REGISTRY_HTTP_ADDR=127.0.0.1:5000", "REGISTRY_HTTP_DEBUG_ADDR=" + debug}})
	if log := d.logFrom(0); !strings.Contains(log, k.ID) {
		t.Errorf("Disco's log does not name the daemon's peer ID %s as its node:\n%s", k.ID, d.logTail())
	}

	dk := needDocker(t)
	ref := d.Host + "/my-image"
	imageID := dk.importRandom(t, ref, 1<<20)
	digest := dockerPush(t, dk, ref)
	c := cidOf(t, d, digest)
	dk.run(t, "rmi", "-f", ref)
	dockerPull(t, dk, d.Host+"/"+c, digest, imageID)

	// The same image gets the same CID over the daemon as on the embedded node.
	img := randomImage(t, 3<<20, 2)
	e := startDisco(t, discoOptions{})
	h := pushImage(t, d, "same/image", "v1", img)
	pushImage(t, e, "same/image", "v1", img)
	if over, embedded := cidOf(t, d, h.String()), cidOf(t, e, h.String()); over != embedded {
		t.Errorf("the same image: CID %s over the daemon, %s on the embedded node", over, embedded)
	}

	// What Disco pushed is in the daemon's MFS, at the original's paths.
	if out := k.Run("files", "ls", "/docker/registry/v2/repositories"); !strings.Contains(out, c) {
		t.Errorf("ipfs files ls on the daemon lists %q, without the CID repository %s", out, c)
	}
}
