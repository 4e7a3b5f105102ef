package kubotest

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDaemon starts a daemon, kills it and restarts it, and checks on the way that it
// listens on 127.0.0.1 only and has no connection anywhere else.
func TestDaemon(t *testing.T) {
	d := New(t)
	d.Start()
	if got := d.Run("id", "-f", "<id>"); got != d.ID {
		t.Errorf("ipfs id = %q, want %q", got, d.ID)
	}
	checkLoopback(t, d.proc.Pid)
	res, err := http.Post(d.APIURL()+"/api/v0/version", "", nil)
	if err != nil {
		t.Fatalf("RPC API at %s: %v", d.APIURL(), err)
	}
	res.Body.Close()

	d.Kill()
	if _, err := http.Post(d.APIURL()+"/api/v0/version", "", nil); err == nil {
		t.Error("the RPC API answers after Kill")
	}
	d.Start() // after a crash: the repository's lock is stale
	d.Restart()
	if got := d.Run("id", "-f", "<id>"); got != d.ID {
		t.Errorf("after restarts, ipfs id = %q, want %q", got, d.ID)
	}
	checkLoopback(t, d.proc.Pid)
}

// checkLoopback fails t if a TCP or UDP socket of process pid has an address other than
// 127.0.0.1 (or 0.0.0.0 for the remote end of a listener).
func checkLoopback(t *testing.T, pid int) {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil || len(fds) == 0 {
		t.Fatalf("no file descriptors of PID %d in /proc: %v", pid, err)
	}
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.Trim(l[len("socket:"):], "[]")] = true
		}
	}
	seen := 0
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue // no IPv6
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			seen++
			local, remote := procAddr(t, f[1]), procAddr(t, f[2])
			if !local.IsLoopback() || !remote.IsLoopback() && !remote.IsUnspecified() {
				t.Errorf("PID %d has a %s socket from %s to %s", pid, table, local, remote)
			}
		}
	}
	if seen == 0 {
		t.Errorf("found no socket of PID %d: not even its listeners", pid)
	}
}

// procAddr parses the IP of an address of /proc/net/tcp: hex, in host byte order by
// 32-bit word, then ":port".
func procAddr(t *testing.T, s string) net.IP {
	h, _, _ := strings.Cut(s, ":")
	b, err := hex.DecodeString(h)
	if err != nil || len(b)%4 != 0 {
		t.Fatalf("address %q in /proc/net: %v", s, err)
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b)
}
