package server_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/discoregistry/disco/internal/disctest"
)

func htpasswd(t *testing.T, user, password string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAuthFirst sends requests without credentials to a registry with htpasswd auth:
// every one gets 401 and a challenge before anything else happens, its body unread.
func TestAuthFirst(t *testing.T) {
	file := htpasswd(t, "u", "secret")
	d := disctest.Start(t, fmt.Sprintf("auth: {htpasswd: {realm: disco, path: %s}}\n", file))
	img, _ := random.Image(1024, 1)
	ref := d.Ref(t, "app/x:v1")
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "u", Password: "secret"})); err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	h, _ := img.Digest()
	for _, tt := range []struct{ method, path string }{
		{http.MethodGet, "/v2/"},
		{http.MethodGet, "/v2/_catalog"},
		{http.MethodGet, "/v2/app/x/manifests/v1"},
		{http.MethodPut, "/v2/app/x/manifests/v2"},
		{http.MethodGet, "/v2/app/x/referrers/" + h.String()},
		{http.MethodPut, "/v2/" + h.Hex + "/manifests/v2"},
		{http.MethodDelete, "/v2/" + h.Hex + "/manifests/" + h.String()},
		{http.MethodGet, "/v2/UPPER/tags/list"},
		{http.MethodGet, "/v2/app/x/nonsense"},
	} {
		// Headers only, and a body that never comes: the answer must not wait for it.
		conn, err := net.Dial("tcp", d.Host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 4000000\r\n\r\n", tt.method, tt.path, d.Host)
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Errorf("%s %s without credentials: no answer before its body: %v", tt.method, tt.path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s %s without credentials: %s, challenge %q; want 401 with a challenge", tt.method, tt.path, resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if code, body := get(t, d.URL("/debug/health")); code != http.StatusOK || strings.TrimSpace(body) != "{}" {
		t.Errorf("health on the registry port: %d %q, want 200 {}", code, body)
	}
}
