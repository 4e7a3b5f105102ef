package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// TestStartLogsNoWarning starts Disco as the README says, with $REGISTRY_CONFIGURATION_PATH
// naming its file, and checks that nothing it logs from start to stop is a warning or an
// error: a start with nothing wrong says nothing is wrong. (Distribution logs every
// request answered with an error, such as the 404 of a HEAD that a push begins with, at
// level error; that is about requests, and not checked here.)
func TestStartLogsNoWarning(t *testing.T) {
	t.Parallel()
	d := startDisco(t, discoOptions{YAML: "log: {level: debug}"})
	if !slices.ContainsFunc(d.env, func(kv string) bool { return strings.HasPrefix(kv, "REGISTRY_CONFIGURATION_PATH=") }) {
		t.Fatal("the harness runs Disco without $REGISTRY_CONFIGURATION_PATH")
	}
	d.Stop()
	bad := regexp.MustCompile(`(?i)level=(warn|warning|error|fatal|panic)\b`)
	for line := range strings.Lines(d.logFrom(0)) {
		if bad.MatchString(line) {
			t.Errorf("Disco logged, on a start and stop with nothing wrong:\n%s", line)
		}
	}
}

// commandWith runs disco with d's environment and extra variables, and returns its stdout, or
// an error with its stderr.
func (d *Disco) commandWith(extra []string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(discoBin(), args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = d.Home, append(slices.Clone(d.env), extra...), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("disco %s: %w\n%s", strings.Join(args, " "), err, &stderr)
	}
	if stderr.Len() > 0 {
		return stdout.String(), fmt.Errorf("disco %s wrote to stderr, which is no terminal:\n%s", strings.Join(args, " "), &stderr)
	}
	return stdout.String(), nil
}

// resolveOK runs disco resolve and returns the digest and CID it prints.
func resolveOK(t *testing.T, d *Disco, extra []string, ref string) (digest, cid string) {
	t.Helper()
	out, err := d.commandWith(extra, "resolve", ref)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Digest, CID string }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("disco resolve %s printed %q: %v", ref, out, err)
	}
	return got.Digest, got.CID
}

func TestResolve(t *testing.T) {
	t.Parallel()
	d := startDisco(t, discoOptions{})
	img := randomImage(t, 1<<20, 1)
	digest := pushImage(t, d, "e2e/resolve", "v1", img).String()
	wantCID := cidOf(t, d, digest)

	for _, ref := range []string{
		d.Host + "/e2e/resolve:v1",
		d.Host + "/e2e/resolve@" + digest,
		d.Host + "/" + strings.TrimPrefix(digest, "sha256:"),
		d.Host + "/" + wantCID,
		"e2e/resolve:v1", // on localhost:$DISCO_PORT
	} {
		if gotDigest, gotCID := resolveOK(t, d, nil, ref); gotDigest != digest || gotCID != wantCID {
			t.Errorf("disco resolve %s = %s %s, want %s %s", ref, gotDigest, gotCID, digest, wantCID)
		}
	}

	for ref, want := range map[string]string{
		d.Host + "/e2e/resolve:nope":                                   "MANIFEST_UNKNOWN",
		d.Host + "/e2e/untagged@" + pushUntagged(t, d, "e2e/untagged"): "has no CID",
		"not a reference!":                                             "could not parse reference",
	} {
		if out, err := d.commandWith(nil, "resolve", ref); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("disco resolve %s = %q, %v; want an error saying %s", ref, out, err, want)
		}
	}
}

// pushUntagged pushes an image to repo by its digest only, and returns the digest.
func pushUntagged(t *testing.T, d *Disco, repo string) string {
	t.Helper()
	img := randomImage(t, 1<<10, 1)
	digest := imageDigest(t, img).String()
	if err := remote.Write(ref(t, d.Host+"/"+repo+"@"+digest), img); err != nil {
		t.Fatal(err)
	}
	return digest
}

// TestResolveAuth resolves an image on a Disco with htpasswd auth, with credentials from
// the environment and from docker's config.
func TestResolveAuth(t *testing.T) {
	t.Parallel()
	user, password := "e2e", fmt.Sprintf("pw-%x", randomBytes(t, 8))
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, fmt.Appendf(nil, "%s:%s\n", user, hash), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDisco(t, discoOptions{YAML: fmt.Sprintf("auth: {htpasswd: {realm: disco, path: %q}}", htpasswd)})
	img := randomImage(t, 1<<10, 1)
	skopeoPush(t, layoutOf(t, img), d.Host+"/app/x:v1", "--dest-creds", user+":"+password)
	digest := imageDigest(t, img).String()
	ref := d.Host + "/app/x:v1"

	noDocker := "DOCKER_CONFIG=" + t.TempDir()
	if out, err := d.commandWith([]string{noDocker}, "resolve", ref); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("disco resolve with no credentials = %q, %v; want UNAUTHORIZED", out, err)
	}
	if got, _ := resolveOK(t, d, []string{noDocker, "DISCO_USERNAME=" + user, "DISCO_PASSWORD=" + password}, ref); got != digest {
		t.Errorf("disco resolve with $DISCO_USERNAME = %s, want %s", got, digest)
	}

	// As docker login leaves it.
	dockerConfig := t.TempDir()
	auth := map[string]any{"auths": map[string]any{d.Host: map[string]string{"auth": encodeBasic(user, password)}}}
	b, _ := json.Marshal(auth)
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := resolveOK(t, d, []string{"DOCKER_CONFIG=" + dockerConfig}, ref); got != digest {
		t.Errorf("disco resolve with docker's config = %s, want %s", got, digest)
	}
}
