package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/kubotest"
)

// TestDockerImage builds Disco's container image with scripts/image and the test dockerd,
// runs it on the host's network on free loopback ports, pushes and pulls an image through
// it with docker, then replaces the container with a new one on the same volume and pulls
// again.
func TestDockerImage(t *testing.T) {
	t.Parallel()
	dk := needDocker(t)
	tag := fmt.Sprintf("disco-e2e:%d", time.Now().UnixNano())
	build := exec.Command("../scripts/image", tag)
	build.Env = dk.env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/image: %v\n%s", err, out)
	}
	t.Cleanup(func() { dk.try("rmi", "--force", tag) })

	var img struct {
		Size   int64
		Config struct {
			User         string
			ExposedPorts map[string]any
			Volumes      map[string]any
			Healthcheck  struct{ Test []string }
		}
	}
	if err := json.Unmarshal([]byte(dk.run(t, "image", "inspect", "--format", "{{json .}}", tag)), &img); err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s: %.1f MiB", tag, float64(img.Size)/(1<<20))
	if img.Config.User == "" || strings.HasPrefix(img.Config.User, "0") || img.Config.User == "root" {
		t.Errorf("the image runs as user %q, want a user of its own", img.Config.User)
	}
	for _, p := range []string{"1970/tcp", "4001/tcp"} {
		if _, ok := img.Config.ExposedPorts[p]; !ok {
			t.Errorf("the image does not expose %s: %v", p, img.Config.ExposedPorts)
		}
	}
	if _, ok := img.Config.Volumes["/var/lib/disco"]; !ok {
		t.Errorf("the image has no volume /var/lib/disco: %v", img.Config.Volumes)
	}
	if !strings.Contains(strings.Join(img.Config.Healthcheck.Test, " "), "health") {
		t.Errorf("the image's health check is %q", img.Config.Healthcheck.Test)
	}
	if img.Size > 150<<20 {
		t.Errorf("the image is %d MiB, want a small one", img.Size>>20)
	}

	// The node listens on loopback only and has no peers: it dials nothing.
	ports := kubotest.FreePorts(t, 2)
	host := "127.0.0.1:" + strconv.Itoa(ports[0])
	conf := t.TempDir()
	os.Chmod(conf, 0o755) // the container's user reads it
	config := fmt.Sprintf(`version: 0.1
http: {addr: "127.0.0.1:0"}
storage:
  ipfs:
    node: {path: /var/lib/disco/ipfs, swarm: [/ip4/127.0.0.1/tcp/%d]}
    uploads: /var/lib/disco/uploads
`, ports[1])
	if err := os.WriteFile(filepath.Join(conf, "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	volume := strings.ReplaceAll(strings.ReplaceAll(tag, ":", "-"), ".", "-")
	dk.run(t, "volume", "create", volume)
	t.Cleanup(func() { dk.try("volume", "rm", "--force", volume) })
	container := ""
	runContainer := func() {
		t.Helper()
		if container != "" {
			dk.run(t, "rm", "--force", container)
		}
		container = dk.run(t, "run", "--detach", "--network", "host", "--health-interval", "1s",
			"--volume", volume+":/var/lib/disco", "--volume", conf+":/etc/disco-e2e:ro",
			"--env", "REGISTRY_CONFIGURATION_PATH=/etc/disco-e2e/config.yaml",
			"--env", "DISCO_PORT="+strconv.Itoa(ports[0]), tag)
		waitHealthy(t, dk, container)
		logs := dk.logs(container)
		if want := regexp.MustCompile(fmt.Sprintf(`addresses=\[/ip4/127\.0\.0\.1/tcp/%d/p2p/\w+\]`, ports[1])); !want.MatchString(logs) {
			t.Errorf("the container's node does not listen on 127.0.0.1:%d alone; its log:\n%s", ports[1], logs)
		}
	}
	runContainer()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("container %s log:\n%s", container, dk.logs(container))
		}
		dk.try("rm", "--force", container)
	})
	if uid := dk.run(t, "top", container, "-o", "pid,uid,comm"); !strings.Contains(uid, "1970") {
		t.Errorf("disco in the container runs as\n%s\nwant uid 1970", uid)
	}

	ref := host + "/e2e/image:v1"
	t.Cleanup(func() { dk.try("rmi", "--force", ref) })
	imageID := dk.importRandom(t, ref, 3<<20)
	digest := dockerPush(t, dk, ref)
	dk.run(t, "rmi", ref)
	dockerPull(t, dk, ref, digest, imageID)

	runContainer() // a new container on the same volume
	dk.run(t, "rmi", ref)
	dockerPull(t, dk, ref, digest, imageID)

	// As docs/docker.md says: disco id in the running container, disco gc in one of its
	// own with the first stopped.
	if out := dk.run(t, "exec", container, "disco", "id"); !strings.Contains(out, fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/", ports[1])) {
		t.Errorf("docker exec disco id printed %s", out)
	}
	dk.run(t, "stop", container)
	out := dk.run(t, "run", "--rm", "--network", "none", "--volume", volume+":/var/lib/disco", "--volume", conf+":/etc/disco-e2e:ro",
		"--env", "REGISTRY_CONFIGURATION_PATH=/etc/disco-e2e/config.yaml", tag, "gc")
	if !strings.Contains(out, "removed 0 blobs") || !strings.Contains(out, "freed") {
		t.Errorf("disco gc in a container printed %q, want that it removed no blob, and what it freed", out)
	}
	dk.run(t, "start", container)
	waitHealthy(t, dk, container)
	dk.run(t, "rmi", ref)
	dockerPull(t, dk, ref, digest, imageID)
}

// waitHealthy waits until docker says the container is healthy, which its health check,
// disco health, decides.
func waitHealthy(t *testing.T, dk *docker, container string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		state := dk.run(t, "inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", container)
		if state == "running healthy" {
			return
		}
		if !strings.HasPrefix(state, "running") || time.Now().After(deadline) {
			t.Fatalf("container %s is %q; its log:\n%s", container, state, dk.logs(container))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logs returns what the container wrote to stdout and stderr.
func (c *docker) logs(container string) string {
	cmd := exec.Command(c.bin, "logs", container)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("docker logs %s: %v\n%s", container, err, out)
	}
	return string(out)
}
