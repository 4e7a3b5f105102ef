// Package netns builds small networks of Linux network namespaces, for tests and
// benchmarks that need real links between processes of one machine: each namespace has
// its own loopback and one interface on a shared bridge, with an address in a private
// /24, and its egress can be capped with tc. It drives iproute2 (ip, tc) and needs root.
//
// Namespaces have no route beyond their /24: what runs in them reaches the other
// namespaces and the bridge's address in the calling process's namespace, nothing else.
package netns

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Dev is the name of every namespace's interface on the bridge.
const Dev = "eth0"

// prefix starts the name of everything this package creates: namespaces ("dsc<id>-<i>"),
// bridges ("dsc<id>b") and the bridge's ends of veth pairs ("dsc<id>v<i>"). An interface
// name has 15 characters at most.
const prefix = "dsc"

// lockDir holds a lock file for each network in use, named by its id. A network whose
// file is not locked belongs to a process that died without closing it.
const lockDir = "/run/disco-netns"

// MaxNamespaces is the largest network New makes.
const MaxNamespaces = 200

var owned = regexp.MustCompile(`^` + prefix + `([0-9a-f]{6})(?:-\d+|b|v\d+)$`)

// Network is a bridge in the calling process's network namespace with namespaces
// attached to it.
type Network struct {
	id     string
	bridge string
	host   netip.Addr
	spaces []*Namespace
	lock   *os.File // flocked while the network is in use
}

// Namespace is one network namespace of a Network.
type Namespace struct {
	Name string     // as ip netns knows it
	Addr netip.Addr // of its interface Dev on the bridge
}

// New creates n namespaces on a new bridge, after removing what networks of processes
// that died left behind. Namespace i has the address .i+1 of a free 10.77.x.0/24 and the
// bridge has .254. Close removes it all.
func New(ctx context.Context, n int) (_ *Network, err error) {
	if n < 1 || n > MaxNamespaces {
		return nil, fmt.Errorf("netns: %d namespaces: want 1 to %d", n, MaxNamespaces)
	}
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	// One New at a time on the machine: each picks a subnet no other network has.
	unlock, err := lockFile(ctx, filepath.Join(lockDir, ".new"))
	if err != nil {
		return nil, err
	}
	defer unlock.Close()
	if err := CleanStale(ctx); err != nil {
		return nil, err
	}
	subnet, err := freeSubnet(ctx)
	if err != nil {
		return nil, err
	}

	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(b[:])
	nw := &Network{id: id, bridge: prefix + id + "b", host: addrIn(subnet, 254)}
	if nw.lock, err = lockFile(ctx, filepath.Join(lockDir, id)); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, nw.Close())
		}
	}()
	if _, err := nw.lock.WriteString(subnet.String() + "\n"); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}

	// The bridge passes nothing through the host's iptables, whatever br_netfilter says.
	if err := run(ctx, "ip", "link", "add", nw.bridge, "type", "bridge",
		"nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0"); err != nil {
		return nil, err
	}
	if err := run(ctx, "ip", "addr", "add", prefixOf(nw.host, subnet), "dev", nw.bridge); err != nil {
		return nil, err
	}
	if err := run(ctx, "ip", "link", "set", nw.bridge, "up"); err != nil {
		return nil, err
	}
	for i := range n {
		s := &Namespace{Name: fmt.Sprintf("%s%s-%d", prefix, id, i), Addr: addrIn(subnet, i+1)}
		if err := nw.add(ctx, s, fmt.Sprintf("%s%sv%d", prefix, id, i), subnet); err != nil {
			return nil, err
		}
	}
	return nw, nil
}

// add creates the namespace s and links it to the bridge through a veth pair whose end on
// the bridge is veth.
func (nw *Network) add(ctx context.Context, s *Namespace, veth string, subnet netip.Prefix) error {
	if err := run(ctx, "ip", "netns", "add", s.Name); err != nil {
		return err
	}
	nw.spaces = append(nw.spaces, s)
	// No IPv6: nothing but what the processes inside send shows in the byte counts.
	for _, cmd := range [][]string{
		{"ip", "netns", "exec", s.Name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"},
		{"ip", "-n", s.Name, "link", "set", "lo", "up"},
		{"ip", "link", "add", veth, "type", "veth", "peer", "name", Dev, "netns", s.Name},
		{"ip", "link", "set", veth, "master", nw.bridge, "up"},
		{"ip", "-n", s.Name, "addr", "add", prefixOf(s.Addr, subnet), "dev", Dev},
		{"ip", "-n", s.Name, "link", "set", Dev, "up"},
	} {
		if err := run(ctx, cmd[0], cmd[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// Namespaces returns the network's namespaces, in the order of their addresses.
func (nw *Network) Namespaces() []*Namespace { return nw.spaces }

// HostAddr is the bridge's address, by which the namespaces reach the calling process's
// namespace.
func (nw *Network) HostAddr() netip.Addr { return nw.host }

// Close removes the namespaces, their veth pairs and the bridge. Processes still running
// in a namespace keep it alive, unreachable: stop them first.
func (nw *Network) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := remove(ctx, nw.id)
	if nw.lock != nil {
		err = errors.Join(err, os.Remove(nw.lock.Name()), nw.lock.Close())
		nw.lock = nil
	}
	return err
}

// CleanStale removes the networks of processes that died without closing them, and
// anything named like this package's that no network in use owns.
func CleanStale(ctx context.Context) error {
	names, err := ownedNames(ctx)
	if err != nil {
		return err
	}
	ids := map[string]bool{}
	for _, name := range names {
		ids[owned.FindStringSubmatch(name)[1]] = true
	}
	files, err := os.ReadDir(lockDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: %w", err)
	}
	for _, f := range files {
		if len(f.Name()) == 6 && !strings.HasPrefix(f.Name(), ".") {
			ids[f.Name()] = true
		}
	}
	var errs []error
	for id := range ids {
		lock, err := os.OpenFile(filepath.Join(lockDir, id), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			lock.Close() // in use
			continue
		}
		errs = append(errs, remove(ctx, id), os.Remove(lock.Name()), lock.Close())
	}
	return errors.Join(errs...)
}

// remove deletes the namespaces and links of the network id that exist.
func remove(ctx context.Context, id string) error {
	names, err := ownedNames(ctx)
	if err != nil {
		return err
	}
	// Veth pairs first: removing a namespace would remove them too, but some time after.
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Compare(removeOrder(a), removeOrder(b))
	})
	var errs []error
	for _, name := range names {
		if owned.FindStringSubmatch(name)[1] != id {
			continue
		}
		switch removeOrder(name) {
		case 0, 2:
			errs = append(errs, run(ctx, "ip", "link", "delete", name))
		case 1:
			errs = append(errs, run(ctx, "ip", "netns", "delete", name))
		}
	}
	return errors.Join(errs...)
}

// removeOrder ranks the names of a network in the order they are removed: veths,
// namespaces, the bridge.
func removeOrder(name string) int {
	switch {
	case strings.Contains(name, "-"):
		return 1
	case strings.HasSuffix(name, "b"):
		return 2
	}
	return 0
}

// ownedNames returns the namespaces and the links of the calling namespace that are
// named like this package's.
func ownedNames(ctx context.Context) ([]string, error) {
	out, err := output(ctx, "ip", "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var links []struct{ Ifname string }
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("netns: ip -j link show: %w", err)
	}
	var names []string
	for _, l := range links {
		if owned.MatchString(l.Ifname) {
			names = append(names, l.Ifname)
		}
	}
	if out, err = output(ctx, "ip", "-j", "netns", "list"); err != nil {
		return nil, err
	}
	var spaces []struct{ Name string }
	// With no namespace at all, ip prints nothing rather than [].
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &spaces); err != nil {
			return nil, fmt.Errorf("netns: ip -j netns list: %w", err)
		}
	}
	for _, s := range spaces {
		if owned.MatchString(s.Name) {
			names = append(names, s.Name)
		}
	}
	return names, nil
}

// freeSubnet returns a 10.77.x.0/24 that no address of the calling namespace is in.
func freeSubnet(ctx context.Context) (netip.Prefix, error) {
	out, err := output(ctx, "ip", "-j", "-4", "addr", "show")
	if err != nil {
		return netip.Prefix{}, err
	}
	var links []struct {
		AddrInfo []struct{ Local string } `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return netip.Prefix{}, fmt.Errorf("netns: ip -j addr show: %w", err)
	}
	used := map[netip.Prefix]bool{}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if ip, err := netip.ParseAddr(a.Local); err == nil {
				p, _ := ip.Prefix(24)
				used[p] = true
			}
		}
	}
	for x := range 256 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(x), 0}), 24)
		if !used[p] {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("netns: every 10.77.x.0/24 is in use")
}

func addrIn(p netip.Prefix, host int) netip.Addr {
	a := p.Addr().As4()
	a[3] = byte(host)
	return netip.AddrFrom4(a)
}

func prefixOf(a netip.Addr, p netip.Prefix) string {
	return netip.PrefixFrom(a, p.Bits()).String()
}

// lockFile opens name and takes an exclusive flock on it, waiting for it until ctx ends.
func lockFile(ctx context.Context, name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("netns: lock %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("netns: lock %s: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Command returns a command that runs name in the namespace, as exec.Command does.
// ip netns exec replaces itself with name: the command's PID is name's.
func (s *Namespace) Command(name string, arg ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", s.Name, name}, arg...)...)
}

// CommandContext is Command with a context, as exec.CommandContext.
func (s *Namespace) CommandContext(ctx context.Context, name string, arg ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", s.Name, name}, arg...)...)
}

// LimitEgress caps what the namespace sends on Dev at bitsPerSecond, with a token bucket
// (tc tbf); 0 removes the cap.
func (s *Namespace) LimitEgress(ctx context.Context, bitsPerSecond int64) error {
	if bitsPerSecond == 0 {
		return run(ctx, "tc", "-n", s.Name, "qdisc", "delete", "dev", Dev, "root")
	}
	if bitsPerSecond < 0 {
		return fmt.Errorf("netns: egress of %d bit/s", bitsPerSecond)
	}
	// A burst of 10ms at the rate, but at least a full-sized segment (veth sends up to
	// 64 KiB at once), and up to 100ms of traffic queued before drops.
	burst := max(bitsPerSecond/8/100, 64<<10)
	return run(ctx, "tc", "-n", s.Name, "qdisc", "replace", "dev", Dev, "root", "tbf",
		"rate", fmt.Sprintf("%dbit", bitsPerSecond), "burst", fmt.Sprint(burst), "latency", "100ms")
}

// Stats are the byte counts of a namespace's interface Dev since it was created.
type Stats struct {
	RxBytes int64 // received
	TxBytes int64 // sent
}

// Stats reads the byte counts of the namespace's interface Dev.
func (s *Namespace) Stats(ctx context.Context) (Stats, error) {
	out, err := output(ctx, "ip", "-n", s.Name, "-j", "-s", "link", "show", "dev", Dev)
	if err != nil {
		return Stats{}, err
	}
	var links []struct {
		Stats64 struct {
			Rx struct{ Bytes int64 }
			Tx struct{ Bytes int64 }
		}
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return Stats{}, fmt.Errorf("netns: ip -s link show in %s printed %q (%v)", s.Name, out, err)
	}
	return Stats{RxBytes: links[0].Stats64.Rx.Bytes, TxBytes: links[0].Stats64.Tx.Bytes}, nil
}

func run(ctx context.Context, name string, arg ...string) error {
	_, err := output(ctx, name, arg...)
	return err
}

func output(ctx context.Context, name string, arg ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, arg...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("netns: %s %s: %w: %s", name, strings.Join(arg, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}
