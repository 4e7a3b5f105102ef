package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/kubotest"
)

// dockerd is the Docker daemon shared by the tests that need one, started by the first
// of them and stopped by TestMain.
var dockerd struct {
	once sync.Once
	err  error
	d    *dockerDaemon
}

// A dockerDaemon is a dockerd of a test's own: vfs storage, no iptables, no bridge, its
// own data root, exec root and socket, under dir.
type dockerDaemon struct {
	dir  string
	proc *os.Process
	done chan struct{}
}

// docker is the docker client, talking to one dockerd.
type docker struct {
	bin string
	env []string
}

// needDocker starts the shared dockerd if it is not running yet. It fails t when docker
// or dockerd is missing or dockerd does not start.
func needDocker(t *testing.T) *docker {
	t.Helper()
	daemon := lookTool(t, "dockerd")
	dockerd.once.Do(func() { dockerd.d, dockerd.err = startDockerd(daemon, filepath.Join(binDir, "dockerd"), "{}\n") })
	if dockerd.err != nil {
		t.Fatalf("dockerd did not start: %v", dockerd.err)
	}
	return dockerd.d.client(t)
}

// ownDocker starts a dockerd for t alone, with the daemon.json config, stopped when t
// ends.
func ownDocker(t *testing.T, config string) *docker {
	t.Helper()
	daemon := lookTool(t, "dockerd")
	// Not t.TempDir(): a unix socket's path must be short.
	dir, err := os.MkdirTemp("", "dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	d, err := startDockerd(daemon, dir, config)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("dockerd did not start: %v", err)
	}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("dockerd log, last lines:\n%s", kubotest.Tail(filepath.Join(dir, "dockerd.log")))
		}
		os.RemoveAll(dir)
	})
	return d.client(t)
}

func (d *dockerDaemon) client(t *testing.T) *docker {
	t.Helper()
	env := kubotest.CleanEnv("DOCKER_")
	env = append(env,
		"DOCKER_HOST=unix://"+filepath.Join(d.dir, "docker.sock"),
		"DOCKER_CONFIG="+filepath.Join(d.dir, "client")) // no credential helpers of the user's
	return &docker{bin: lookTool(t, "docker"), env: env}
}

// startDockerd runs a dockerd in dir with the daemon.json config.
func startDockerd(daemon, dir, config string) (*dockerDaemon, error) {
	for _, sub := range []string{"data", "exec", "client"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(config), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	sock := filepath.Join(dir, "docker.sock")
	cmd := exec.Command(daemon,
		"--config-file", filepath.Join(dir, "daemon.json"),
		"--storage-driver=vfs", "--iptables=false", "--ip6tables=false", "--bridge=none",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"-H", "unix://"+sock, "--pidfile", filepath.Join(dir, "dockerd.pid"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &dockerDaemon{dir: dir, proc: cmd.Process, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(d.done)
	}()

	client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		select {
		case <-d.done:
			return nil, fmt.Errorf("dockerd exited; log %s:\n%s", log.Name(), kubotest.Tail(log.Name()))
		default:
		}
		res, err := client.Get("http://docker/_ping")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return d, nil
			}
		}
	}
	d.stop()
	return nil, fmt.Errorf("dockerd not answering on %s after a minute; log %s:\n%s", sock, log.Name(), kubotest.Tail(log.Name()))
}

// stop stops the dockerd by its PID.
func (d *dockerDaemon) stop() {
	d.proc.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(time.Minute):
		d.proc.Signal(syscall.SIGKILL)
		<-d.done
	}
}

// stopDockerd stops the shared dockerd, if it was started.
func stopDockerd() {
	if dockerd.d != nil {
		dockerd.d.stop()
	}
}

// run runs docker with args and returns its trimmed standard output.
func (c *docker) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.try(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// try runs docker with args and returns its trimmed standard output or an error with its
// standard error.
func (c *docker) try(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(c.bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = c.env, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %v\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// randomRootfs writes a root file system tarball holding one file of size random bytes.
func randomRootfs(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rootfs.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Name: "random.bin", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

var pushedDigest = regexp.MustCompile(`digest: (sha256:[0-9a-f]{64}) size:`)

// importRandom makes an image of a random layer of about size bytes under ref, removed
// when the test ends, and returns its ID.
func (c *docker) importRandom(t *testing.T, ref string, size int64) string {
	t.Helper()
	c.run(t, "import", randomRootfs(t, size), ref)
	id := c.run(t, "image", "inspect", "--format", "{{.Id}}", ref)
	t.Cleanup(func() { c.try("rmi", "--force", id) })
	return id
}

func TestDockerPushPull(t *testing.T) {
	t.Parallel()
	dk := needDocker(t)
	d := startDisco(t, discoOptions{})
	repo := d.Host + "/e2e/docker"
	ref := repo + ":v1"
	t.Cleanup(func() { dk.try("rmi", "--force", ref) })

	dk.run(t, "import", randomRootfs(t, 6<<20), ref)
	imageID := dk.run(t, "image", "inspect", "--format", "{{.Id}}", ref)
	out := dk.run(t, "push", ref)
	m := pushedDigest.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("docker push printed no digest:\n%s", out)
	}
	pushed := repo + "@" + m[1]
	if got := dk.run(t, "image", "inspect", "--format", "{{index .RepoDigests 0}}", ref); got != pushed {
		t.Errorf("after push, RepoDigests[0] = %s, want %s", got, pushed)
	}
	if got := manifestDigest(t, d, "e2e/docker", "v1"); got != m[1] {
		t.Errorf("Disco serves e2e/docker:v1 as %s, docker pushed %s", got, m[1])
	}

	dk.run(t, "rmi", ref)
	if _, err := dk.try("image", "inspect", ref); err == nil {
		t.Fatalf("%s is still in dockerd after docker rmi", ref)
	}
	dk.run(t, "pull", ref)
	if got := dk.run(t, "image", "inspect", "--format", "{{index .RepoDigests 0}}", ref); got != pushed {
		t.Errorf("pulled image's RepoDigests[0] = %s, want %s", got, pushed)
	}
	if got := dk.run(t, "image", "inspect", "--format", "{{.Id}}", ref); got != imageID {
		t.Errorf("pulled image ID = %s, pushed %s", got, imageID)
	}
}
