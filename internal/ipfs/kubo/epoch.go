package kubo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// epoch is a connection to the daemon that the node keeps open, to tell whether the
// daemon restarted between two moments: a restart closes it, and the next probe dials
// again. A connection closed for another reason counts as a restart too, which costs a
// request retried, never a change lost.
type epoch struct {
	client *http.Client
	url    string // the RPC API's version command
	dials  atomic.Int64
}

func newEpoch(base string) *epoch {
	e := &epoch{url: base + "/api/v0/version"}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	e.client = &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			e.dials.Add(1)
			return dialer.DialContext(ctx, network, addr)
		},
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
	}}
	return e
}

// probe makes a call on the connection, within timeout, and returns how many times it
// was dialed so far.
func (e *epoch) probe(ctx context.Context, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, nil)
	if err != nil {
		return 0, err
	}
	res, err := e.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("kubo version: %w", err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, io.LimitReader(res.Body, maxSmallReply))
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("kubo version: %s", res.Status)
	}
	return e.dials.Load(), nil
}

func (e *epoch) close() { e.client.CloseIdleConnections() }
