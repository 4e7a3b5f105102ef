package server_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/disctest"
)

// stalledPatch sends the headers of a PATCH of 1000 bytes to loc, and 10 of its bytes,
// then nothing more. It returns the connection, which the test closes.
func stalledPatch(t *testing.T, loc string) net.Conn {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n0123456789", u.RequestURI(), u.Host)
	return conn
}

func startUpload(t *testing.T, d *disctest.Disco, repo string) string {
	t.Helper()
	return disctest.Request(t, http.MethodPost, d.URL("/v2/"+repo+"/blobs/uploads/"), nil, nil, http.StatusAccepted)
}

// TestStalledBodyCutOff stalls a PATCH mid-body: the registry gives up on it after
// disco.bodytimeout rather than holding its connection and upload for ever.
func TestStalledBodyCutOff(t *testing.T) {
	d := disctest.Start(t, "disco: {bodytimeout: 1s}\n")
	conn := stalledPatch(t, startUpload(t, d, "app/x"))
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("a PATCH whose body stalled got %s", resp.Status)
		}
	} else if strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the registry still holds a stalled PATCH after a minute: %v", err)
	}
}

// TestUploadSlots holds the one upload slot of a registry with disco.maxuploads: 1: other
// upload requests get 429 TOOMANYREQUESTS until it is free, and the rest of the API is
// served all along.
func TestUploadSlots(t *testing.T) {
	d := disctest.Start(t, "disco: {maxuploads: 1, bodytimeout: 1m}\n")
	loc := startUpload(t, d, "app/x")
	conn := stalledPatch(t, loc)
	time.Sleep(500 * time.Millisecond) // the PATCH is being served
	if code, ec := disctest.OCIError(t, http.MethodPost, d.URL("/v2/app/y/blobs/uploads/")); code != http.StatusTooManyRequests || ec != "TOOMANYREQUESTS" {
		t.Errorf("a second upload while the slot is taken: %d %s, want 429 TOOMANYREQUESTS", code, ec)
	}
	if code, _ := disctest.OCIError(t, http.MethodGet, d.URL("/v2/")); code != http.StatusOK {
		t.Errorf("GET /v2/ while the slot is taken: %d", code)
	}
	conn.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, _ := disctest.OCIError(t, http.MethodPost, d.URL("/v2/app/y/blobs/uploads/"))
		if code == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot is not free 30s after its client went: %d", code)
		}
	}
}

// TestPatchRetriedAfter416 retries a PATCH with the location of the one before it, as a
// client that missed an answer does: it is refused, and the upload goes on from where it
// was.
func TestPatchRetriedAfter416(t *testing.T) {
	d := disctest.Start(t, "")
	first := startUpload(t, d, "app/x")
	patch := func(loc, rng, body string, want int) string {
		return disctest.Request(t, http.MethodPatch, loc, []byte(body),
			map[string]string{"Content-Type": "application/octet-stream", "Content-Range": rng}, want)
	}
	second := patch(first, "0-4", "hello", http.StatusAccepted)
	patch(first, "0-4", "hello", http.StatusRequestedRangeNotSatisfiable)
	third := patch(second, "5-10", " world", http.StatusAccepted)
	disctest.Request(t, http.MethodPut, third+"&digest="+disctest.SHA256([]byte("hello world")), nil, nil, http.StatusCreated)
}
