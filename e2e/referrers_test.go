package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/crypto/bcrypt"

	"github.com/discoregistry/disco/internal/kubotest"
)

const (
	signatureType = "application/vnd.example.signature.v1"
	sbomType      = "application/vnd.example.sbom.v1"
	noSuchType    = "application/vnd.example.none"
)

// TestReferrers attaches artifacts to an image with the ORAS CLI and by hand, and lists
// them with oras discover and the referrers API, across a restart and a delete; and, on a
// Disco with htpasswd auth, checks the referrers API wants the pull credentials.
func TestReferrers(t *testing.T) {
	t.Parallel()
	lookTool(t, "skopeo")
	oras := newORAS(t)

	t.Run("oras", func(t *testing.T) {
		t.Parallel()
		d := startDisco(t, discoOptions{})
		subject := pushSubject(t, d, "app/x:v1")
		sig := oras.attach(t, d.Host+"/app/x:v1", signatureType, subject.Digest.String())
		sbom := putReferrer(t, d, "app/x", subject, sbomType)

		expectReferrers(t, d, oras, subject, map[string]string{sig: signatureType, sbom: sbomType})

		d.Stop()
		d.Restart()
		expectReferrers(t, d, oras, subject, map[string]string{sig: signatureType, sbom: sbomType})

		res := send(t, http.MethodDelete, d.URL("/v2/app/x/manifests/"+sig), nil)
		if res.status != http.StatusAccepted {
			t.Fatalf("DELETE the signature manifest %s: %d %s", sig, res.status, res.body)
		}
		expectReferrers(t, d, oras, subject, map[string]string{sbom: sbomType})
	})

	t.Run("htpasswd", func(t *testing.T) {
		t.Parallel()
		user, password := "e2e", "pw-"+fmt.Sprintf("%x", randomBytes(t, 8))
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(t.TempDir(), "htpasswd")
		if err := os.WriteFile(htpasswd, fmt.Appendf(nil, "%s:%s\n", user, hash), 0o600); err != nil {
			t.Fatal(err)
		}
		d := startDisco(t, discoOptions{YAML: fmt.Sprintf("auth: {htpasswd: {realm: disco, path: %q}}", htpasswd)})
		img := randomImage(t, 1<<20, 1)
		skopeoPush(t, layoutOf(t, img), d.Host+"/app/x:v1", "--dest-creds", user+":"+password)
		subject := imageDigest(t, img).String()
		sig := oras.attach(t, d.Host+"/app/x:v1", signatureType, subject, "--username", user, "--password", password)

		u := d.URL("/v2/app/x/referrers/" + subject)
		basic := func(user, password string) string {
			return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		}
		for name, header := range map[string][]string{
			"no credentials":   nil,
			"a wrong password": {"Authorization", basic(user, password+"x")},
			"an unknown user":  {"Authorization", basic("nobody", password)},
			"a bearer token":   {"Authorization", "Bearer " + password},
		} {
			res := send(t, http.MethodGet, u, nil, header...)
			if got := res.reply(); got != (reply{401, "UNAUTHORIZED"}) {
				t.Errorf("GET %s with %s: %d %q, want 401 UNAUTHORIZED; body %s", u, name, got.status, got.code, res.body)
			}
			if ch := res.header.Get("WWW-Authenticate"); ch != `Basic realm="disco"` {
				t.Errorf("GET %s with %s: WWW-Authenticate %q, want Basic realm=\"disco\"", u, name, ch)
			}
		}
		// As the rest of the API.
		send(t, http.MethodGet, d.URL("/v2/app/x/tags/list"), nil).expect(t, reply{401, "UNAUTHORIZED"})

		index := getReferrers(t, d, "app/x", subject, "", "Authorization", basic(user, password))
		if got := referrerTypes(index); !maps.Equal(got, map[string]string{sig: signatureType}) {
			t.Errorf("referrers API with credentials lists %v, want %s (%s)", got, sig, signatureType)
		}
		if got := oras.discover(t, d.Host+"/app/x:v1", "", "--username", user, "--password", password); !maps.Equal(got, map[string]string{sig: signatureType}) {
			t.Errorf("oras discover with credentials lists %v, want %s (%s)", got, sig, signatureType)
		}
	})
}

// expectReferrers checks that the referrers of subject in app/x are want (artifact types
// by digest), with the referrers API, filtered and not, and with oras discover.
func expectReferrers(t *testing.T, d *Disco, oras *orasCLI, subject v1.Descriptor, want map[string]string) {
	t.Helper()
	for _, at := range []string{"", signatureType, sbomType, noSuchType} {
		filtered := maps.Clone(want)
		if at != "" {
			maps.DeleteFunc(filtered, func(_, typ string) bool { return typ != at })
		}
		index := getReferrers(t, d, "app/x", subject.Digest.String(), at)
		if got := referrerTypes(index); !maps.Equal(got, filtered) {
			t.Errorf("referrers API, artifactType %q: %v, want %v", at, got, filtered)
		}
		for _, m := range index.Manifests {
			if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Size <= 0 {
				t.Errorf("referrers API lists %s as %q of %d bytes, want an OCI image manifest", m.Digest, m.MediaType, m.Size)
			}
		}
		if at == sbomType {
			continue // oras discover: one filter is enough
		}
		if got := oras.discover(t, d.Host+"/app/x:v1", at); !maps.Equal(got, filtered) {
			t.Errorf("oras discover, artifact type %q: %v, want %v", at, got, filtered)
		}
	}
}

// getReferrers lists the referrers of subject in repo with the referrers API, filtered by
// artifactType unless it is empty, and checks the answer's status and headers. header
// holds pairs of names and values.
func getReferrers(t *testing.T, d *Disco, repo, subject, artifactType string, header ...string) v1.IndexManifest {
	t.Helper()
	u := d.URL("/v2/" + repo + "/referrers/" + subject)
	if artifactType != "" {
		u += "?artifactType=" + url.QueryEscape(artifactType)
	}
	res := send(t, http.MethodGet, u, nil, header...)
	if res.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, res.status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("GET %s: Content-Type %q, want application/vnd.oci.image.index.v1+json", u, ct)
	}
	wantFilters := ""
	if artifactType != "" {
		wantFilters = "artifactType"
	}
	if got := res.header.Get("OCI-Filters-Applied"); got != wantFilters {
		t.Errorf("GET %s: OCI-Filters-Applied %q, want %q", u, got, wantFilters)
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(res.body, &index); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, res.body)
	}
	if index.SchemaVersion != 2 || index.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("GET %s: not an OCI image index: %s", u, res.body)
	}
	return index
}

func referrerTypes(index v1.IndexManifest) map[string]string {
	m := map[string]string{}
	for _, desc := range index.Manifests {
		m[desc.Digest.String()] = desc.ArtifactType
	}
	return m
}

// pushSubject pushes a random image to d as ref with skopeo and returns its descriptor.
func pushSubject(t *testing.T, d *Disco, ref string) v1.Descriptor {
	t.Helper()
	img := randomImage(t, 1<<20, 1)
	skopeoPush(t, layoutOf(t, img), d.Host+"/"+ref)
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: imageDigest(t, img), Size: int64(len(raw))}
}

// putReferrer pushes, with plain HTTP, an artifact of type artifactType whose subject is
// subject, checks the answer carries OCI-Subject, and returns the artifact's digest.
func putReferrer(t *testing.T, d *Disco, repo string, subject v1.Descriptor, artifactType string) string {
	t.Helper()
	empty := []byte("{}")
	emptyDigest := fmt.Sprintf("sha256:%x", sha256.Sum256(empty))
	res := send(t, http.MethodPut, withDigest(startUpload(t, d, repo), emptyDigest), empty, "Content-Type", "application/octet-stream")
	if res.status != http.StatusCreated {
		t.Fatalf("upload the empty blob: %d %s", res.status, res.body)
	}
	emptyDesc := map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": emptyDigest, "size": len(empty)}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"artifactType":  artifactType,
		"config":        emptyDesc,
		"layers":        []any{emptyDesc},
		"subject":       subject,
	})
	if err != nil {
		t.Fatal(err)
	}
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(manifest))
	u := d.URL("/v2/" + repo + "/manifests/" + digest)
	res = send(t, http.MethodPut, u, manifest, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if res.status != http.StatusCreated {
		t.Fatalf("PUT %s: %d %s", u, res.status, res.body)
	}
	if got := res.header.Get("OCI-Subject"); got != subject.Digest.String() {
		t.Errorf("PUT %s, a manifest with a subject: OCI-Subject %q, want %s", u, got, subject.Digest)
	}
	return digest
}

// orasCLI runs the ORAS CLI, with a HOME of its own so that no credentials or settings
// of the user's apply.
type orasCLI struct {
	bin string
	env []string
}

func newORAS(t *testing.T) *orasCLI {
	t.Helper()
	home := t.TempDir()
	return &orasCLI{
		bin: orasTool.Path(t),
		env: append(kubotest.CleanEnv("HOME", "DOCKER_", "ORAS_"), "HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, ".docker")),
	}
}

// run runs oras with args in dir and returns its standard output and error.
func (o *orasCLI) run(t *testing.T, dir string, args ...string) (stdout, stderr []byte) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(o.bin, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, o.env, &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("oras %s: %v\n%s%s", strings.Join(args, " "), err, out.Bytes(), errOut.Bytes())
	}
	return out.Bytes(), errOut.Bytes()
}

// attach attaches a file of artifact type artifactType to ref with oras attach, checks
// that Disco's answer to the manifest carried OCI-Subject: subject (oras --debug shows
// response headers), and returns the artifact's digest.
func (o *orasCLI) attach(t *testing.T, ref, artifactType, subject string, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "artifact.bin"), randomBytes(t, 512), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"attach", "--debug", "--format", "json", "--plain-http", "--artifact-type", artifactType}, flags...)
	stdout, stderr := o.run(t, dir, append(args, ref, "artifact.bin")...)
	var desc struct{ Digest, ArtifactType string }
	if err := json.Unmarshal(stdout, &desc); err != nil || !strings.HasPrefix(desc.Digest, "sha256:") {
		t.Fatalf("oras attach printed %s (%v), want the artifact's descriptor", stdout, err)
	}
	if desc.ArtifactType != artifactType {
		t.Errorf("oras attach: artifact type %q, want %q", desc.ArtifactType, artifactType)
	}
	if want := fmt.Sprintf("%q: %q", "Oci-Subject", subject); !bytes.Contains(stderr, []byte(want)) {
		t.Errorf("oras attach --debug shows no response header %s; its log:\n%s", want, stderr)
	}
	return desc.Digest
}

// discover lists the referrers of ref with oras discover through the referrers API,
// filtered by artifactType unless it is empty: artifact types by digest.
func (o *orasCLI) discover(t *testing.T, ref, artifactType string, flags ...string) map[string]string {
	t.Helper()
	args := append([]string{"discover", "--format", "json", "--plain-http", "--distribution-spec", "v1.1-referrers-api"}, flags...)
	if artifactType != "" {
		args = append(args, "--artifact-type", artifactType)
	}
	stdout, _ := o.run(t, t.TempDir(), append(args, ref)...)
	var tree struct {
		Referrers []struct{ Digest, ArtifactType string }
	}
	if err := json.Unmarshal(stdout, &tree); err != nil {
		t.Fatalf("oras discover printed %s: %v", stdout, err)
	}
	m := map[string]string{}
	for _, r := range tree.Referrers {
		m[r.Digest] = r.ArtifactType
	}
	return m
}
