package server_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/discoregistry/disco/internal/disctest"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOperations checks the health endpoint on both addresses and Prometheus metrics on
// the debug address.
func TestOperations(t *testing.T) {
	debug := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := disctest.Start(t, fmt.Sprintf("http: {debug: {addr: %q, prometheus: {enabled: true, path: /prom}}}\n", debug))
	img, _ := random.Image(1024, 1)
	d.Push(t, "app/x:v1", img)

	for _, url := range []string{d.URL("/debug/health"), "http://" + debug + "/debug/health"} {
		if code, body := get(t, url); code != http.StatusOK || strings.TrimSpace(body) != "{}" {
			t.Errorf("GET %s: %d %q, want 200 {}", url, code, body)
		}
	}
	if code, _ := get(t, d.URL("/")); code != http.StatusOK {
		t.Errorf("GET /: %d", code)
	}
	code, body := get(t, "http://"+debug+"/prom")
	if code != http.StatusOK || !strings.Contains(body, "registry_storage_action_seconds") {
		t.Errorf("GET /prom: %d, no registry_storage_action_seconds in %d bytes", code, len(body))
	}
}
