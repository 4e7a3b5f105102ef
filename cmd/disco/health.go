package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/discoregistry/disco/internal/config"
)

// health asks the Disco the configuration describes for GET /debug/health, for a
// container's health check: the image has no curl.
func health(e *env, args []string) error {
	if err := e.parseNone(args); err != nil {
		return helped(err)
	}
	c, err := config.Load(e.getenv)
	if err != nil {
		return err
	}
	addr, scheme := c.Addr, "http"
	if host, port, err := net.SplitHostPort(c.Addr); err == nil && c.Net != "unix" {
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		addr = net.JoinHostPort(host, port)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, c.Net, addr)
	}}
	if tc := c.Registry.HTTP.TLS; tc.Certificate != "" || tc.LetsEncrypt.CacheFile != "" {
		// The process on this machine is asked whether it is up, not who it is.
		scheme, tr.TLSClientConfig = "https", &tls.Config{InsecureSkipVerify: true}
	}
	client := http.Client{Transport: tr, Timeout: 10 * time.Second}
	res, err := client.Get(scheme + "://disco/debug/health")
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s: %s", addr, res.Status)
	}
	fmt.Fprintln(e.stdout, "ok")
	return nil
}
