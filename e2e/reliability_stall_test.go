package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"
)

// TestReliabilityStalled opens blob uploads whose PATCH sends a few MiB and then nothing,
// many at once, on a Disco with a short disco.bodytimeout: each must be cut off, with an
// answer that is no 5xx, and the memory they held must come back down.
func TestReliabilityStalled(t *testing.T) {
	t.Parallel()
	const (
		stalled     = 32
		sent        = 3<<20 + 12345 // three chunks and part of a fourth
		bodyTimeout = 2 * time.Second
		// slack is what the uploads may still hold once cut off, in MiB: the chunk in
		// progress of each.
		slack = stalled + 16
	)
	d := startDisco(t, discoOptions{YAML: fmt.Sprintf("disco: {bodytimeout: %s}", bodyTimeout)})
	rt := newCounting()
	// A push first, so that what is measured before is a Disco at work.
	img := randomImage(t, 4<<20, 1)
	if err := pushTo(context.Background(), rt, d.Host+"/stall/warm:v1", img); err != nil {
		t.Fatal(err)
	}
	before := memoryOf(t, d.PID)
	var held, after memory
	var cut, fivexx, other int
	var statuses []string
	ran := rounds(1, func(round int) bool {
		var conns []net.Conn
		for range stalled {
			conns = append(conns, stallPatch(t, d, int64(sent)))
		}
		time.Sleep(bodyTimeout / 2) // they are read, and stall
		held = memoryOf(t, d.PID)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() {
				status, err := answerOf(c, 10*bodyTimeout)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					other++
					statuses = append(statuses, err.Error())
				case status >= 500:
					fivexx++
					statuses = append(statuses, fmt.Sprint(status))
				default:
					cut++
				}
			})
		}
		wg.Wait()
		// The uploads' memory goes back, but for the chunk in progress of each (a MiB at
		// most), which an upload keeps for its next PATCH for a while.
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			after = memoryOf(t, d.PID)
			if after.rss <= before.rss+slack || time.Now().After(deadline) {
				break
			}
		}
		if err := pushTo(context.Background(), rt, fmt.Sprintf("%s/stall/after:%d", d.Host, round), img); err != nil {
			t.Errorf("push after the stalled uploads were cut off: %v", err)
		}
		return !t.Failed()
	})
	figures(t, "stalled clients: %d rounds of %d PATCHes stalled after %.1f MiB, %d cut off after %s, %d 5xx, "+
		"%d other; RSS %.0f MiB before, %.0f MiB held, %.0f MiB after", ran, stalled, float64(sent)/(1<<20), cut,
		bodyTimeout, fivexx, other, before.rss, held.rss, after.rss)
	if fivexx+other > 0 {
		t.Errorf("stalled uploads were answered %q, want a 4xx or the connection closed", statuses)
	}
	if after.rss > before.rss+slack {
		t.Errorf("RSS %.0f MiB 15 s after the stalled uploads were cut off, want at most %d MiB over the %.0f MiB before",
			after.rss, slack, before.rss)
	}
	rt.check(t)
}

// stallPatch starts an upload on d and sends a PATCH that says it brings 64 MiB and
// brings n bytes, then nothing; it returns the connection.
func stallPatch(t *testing.T, d *Disco, n int64) net.Conn {
	t.Helper()
	loc, err := url.Parse(startUpload(t, d, "stall/app"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", d.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	head := fmt.Sprintf("PATCH %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"+
		"Content-Length: %d\r\n\r\n", loc.RequestURI(), d.Host, 64<<20)
	if _, err := c.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(randomBytes(t, int(n))); err != nil {
		t.Fatal(err)
	}
	return c
}

// answerOf reads the status of the answer on c, if any comes within wait: 0 when the
// server closed the connection without one.
func answerOf(c net.Conn, wait time.Duration) (int, error) {
	c.SetReadDeadline(time.Now().Add(wait))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return 0, fmt.Errorf("no answer within %s", wait)
		}
		return 0, nil // closed
	}
	res.Body.Close()
	return res.StatusCode, nil
}
