package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestTLS serves the registry with http.tls's certificate and key.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	d := disctest.Start(t, fmt.Sprintf("http: {tls: {certificate: %q, key: %q}}\n", certFile, keyFile))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + d.Host + "/v2/")
	if err != nil {
		t.Fatalf("GET https://%s/v2/: %v", d.Host, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Errorf("GET /v2/ over TLS: %s", resp.Status)
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key to dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "disco test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestWebPage checks where the web page is served, and that a GET / that does not ask
// for HTML still answers as a liveness check. Not in parallel: Kubo's node constructor
// writes package variables, which the race detector sees when two nodes start at once.
func TestWebPage(t *testing.T) {
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(t *testing.T, url string, browser bool) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if browser {
			req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), string(b)
	}
	for _, tc := range []struct {
		name, yaml, page string // page: where the page is, "" for none
	}{
		{"on by default", "", "/ui/"},
		{"off", "ui: {enabled: false}\n", ""},
		{"under http.prefix", "http: {prefix: /registry/}\n", "/registry/ui/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := disctest.Start(t, tc.yaml)
			if tc.page == "/ui/" {
				img, _ := random.Image(1024, 1)
				d.Push(t, "app/x:v1", img)
			}
			if code, _, body := do(t, d.URL("/"), false); code != http.StatusOK || body != "" {
				t.Errorf("GET / for a liveness check: %d %q, want 200 and no body", code, body)
			}
			code, loc, _ := do(t, d.URL("/"), true)
			switch {
			case tc.page == "" && code != http.StatusOK:
				t.Errorf("a browser's GET / with the page off: %d, want 200", code)
			case tc.page != "" && (code != http.StatusFound || loc != tc.page):
				t.Errorf("a browser's GET /: %d to %q, want a redirect to %s", code, loc, tc.page)
			}
			if tc.page == "" {
				if code, _, _ := do(t, d.URL("/ui/"), true); code != http.StatusNotFound {
					t.Errorf("GET /ui/ with the page off: %d, want 404", code)
				}
				return
			}
			code, _, body := do(t, d.URL(tc.page), true)
			if code != http.StatusOK || !strings.Contains(body, "<h1>Repositories</h1>") {
				t.Errorf("GET %s: %d, want the repository list:\n%s", tc.page, code, body)
			}
			if tc.page != "/ui/" {
				return // nothing pushed
			}
			// The push shows a moment after it is answered.
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(body, `href="/ui/r/app/x"`); time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("10s after pushing app/x, GET /ui/ gives:\n%s", body)
				}
				_, _, body = do(t, d.URL(tc.page), true)
			}
		})
	}
}
