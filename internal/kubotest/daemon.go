// Package kubotest runs Kubo daemons for tests, the unit tests of Disco's remote IPFS node
// and the end-to-end tests alike, with the process helpers they share. A daemon listens on
// free 127.0.0.1 ports only and dials nothing it is not told to: no bootstrap peers, no
// routing, no AutoConf, no telemetry.
package kubotest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Daemon is a Kubo daemon run by a test (New) or a command (Init), with its own IPFS_PATH,
// API, gateway and swarm. It is stopped by its PID when the test ends, or by the
// command's Stop.
type Daemon struct {
	ID          string // its peer ID
	SwarmPort   int
	APIPort     int
	GatewayPort int
	Log         string // the daemon's output, across restarts

	t     testing.TB // nil for a command's daemon
	bin   string
	env   []string
	peers []string
	proc  *os.Process
	done  chan struct{}
}

// AddOptions are the import parameters of Disco's storage format, as ipfs add flags.
var AddOptions = []string{"--cid-version=1", "--raw-leaves", "--chunker=size-1048576", "--max-file-links=1024"}

// readyTimeout is how long a daemon may take to start.
const readyTimeout = time.Minute

// stopTimeout is how long a daemon may take to stop after SIGTERM, before SIGKILL.
const stopTimeout = 30 * time.Second

// New initialises a Kubo repository in a temporary directory of t and configures it;
// Start runs the daemon, which is stopped when t ends.
func New(t testing.TB) *Daemon {
	t.Helper()
	d, err := Init(Kubo.Path(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d.t = t
	t.Cleanup(d.cleanup)
	return d
}

// Init initialises a Kubo repository in dir, with the binary bin (Kubo.Build), and
// configures it as New does, for a command rather than a test: Launch runs the daemon,
// and the caller stops it with Stop, even after Launch failed. Run, Add, Start, Restart,
// Pause and SetAPIPort fail a test, and are for New's daemons; Try is for both.
func Init(bin, dir string) (*Daemon, error) {
	d := &Daemon{bin: bin, Log: filepath.Join(dir, "kubo.log")}
	// IPFS_TELEMETRY=off as well as the plugin's config: the telemetry plugin reports to
	// an outside server unless told not to.
	d.env = append(CleanEnv("IPFS_", "HOME", "LIBP2P_"),
		"IPFS_PATH="+filepath.Join(dir, "repo"), "IPFS_TELEMETRY=off", "HOME="+dir)
	if _, err := d.Try("init", "--profile", "test", "--empty-repo"); err != nil {
		return nil, err
	}
	ports, err := Ports(3)
	if err != nil {
		return nil, err
	}
	d.SwarmPort, d.APIPort, d.GatewayPort = ports[0], ports[1], ports[2]
	for _, kv := range [][2]string{
		{"Plugins.Plugins.telemetry.Config.Mode", `"off"`},
		{"Addresses.Swarm", fmt.Sprintf(`["/ip4/127.0.0.1/tcp/%d"]`, d.SwarmPort)},
		{"Addresses.API", fmt.Sprintf(`"/ip4/127.0.0.1/tcp/%d"`, d.APIPort)},
		{"Addresses.Gateway", fmt.Sprintf(`"/ip4/127.0.0.1/tcp/%d"`, d.GatewayPort)},
		{"Bootstrap", `[]`},
		{"Routing.Type", `"none"`},
		{"Routing.DelegatedRouters", `[]`},
		{"Ipns.DelegatedPublishers", `[]`},
		{"DNS.Resolvers", `{}`},
		{"AutoConf.Enabled", `false`},
		{"AutoTLS.Enabled", `false`},
		{"AutoNAT.ServiceMode", `"disabled"`},
		{"Discovery.MDNS.Enabled", `false`},
		{"Swarm.DisableNatPortMap", `true`},
		{"Swarm.RelayClient.Enabled", `false`},
		{"Swarm.RelayService.Enabled", `false`},
		{"Swarm.EnableHolePunching", `false`},
		{"Swarm.Transports.Network.Relay", `false`},
		{"Provide.Enabled", `false`},
		{"HTTPRetrieval.Enabled", `false`},
		{"Pubsub.Enabled", `false`},
	} {
		if _, err := d.Try("config", "--json", kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	d.ID, err = d.Try("config", "Identity.PeerID")
	if err != nil {
		return nil, err
	}
	return d, nil
}

// PeerAddr is the daemon's swarm address with /p2p/<id>, for the peers of other nodes.
func (d *Daemon) PeerAddr() string {
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", d.SwarmPort, d.ID)
}

// SetAPIPort has the daemon serve its RPC API on port of 127.0.0.1 from its next start,
// for a configuration that names a fixed URL.
func (d *Daemon) SetAPIPort(port int) {
	d.t.Helper()
	d.APIPort = port
	d.Run("config", "--json", "Addresses.API", fmt.Sprintf(`"/ip4/127.0.0.1/tcp/%d"`, port))
}

// APIURL is the base URL of the daemon's RPC API.
func (d *Daemon) APIURL() string { return fmt.Sprintf("http://127.0.0.1:%d", d.APIPort) }

// APIAddr is the multiaddr of the daemon's RPC API.
func (d *Daemon) APIAddr() string { return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", d.APIPort) }

// Start runs the daemon, peered with peers (full multiaddrs with /p2p/<id>), and waits
// until it is ready.
func (d *Daemon) Start(peers ...string) {
	d.t.Helper()
	if err := d.Launch(peers...); err != nil {
		d.t.Fatal(err)
	}
}

// Launch is Start for a command: it returns what Start fails the test with.
func (d *Daemon) Launch(peers ...string) error {
	if d.running() {
		return fmt.Errorf("ipfs daemon (PID %d) started twice", d.proc.Pid)
	}
	type peer struct {
		ID    string
		Addrs []string
	}
	ps := []peer{}
	for _, p := range peers {
		addr, id, ok := strings.Cut(p, "/p2p/")
		if !ok {
			return fmt.Errorf("peer address %s has no /p2p/<id>", p)
		}
		ps = append(ps, peer{ID: id, Addrs: []string{addr}})
	}
	b, err := json.Marshal(ps)
	if err != nil {
		return err
	}
	if _, err := d.Try("config", "--json", "Peering.Peers", string(b)); err != nil {
		return err
	}
	d.peers = peers

	log, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	from, _ := log.Seek(0, io.SeekEnd)
	cmd := exec.Command(d.bin, "daemon", "--migrate=false")
	cmd.Env, cmd.Stdout, cmd.Stderr = d.env, log, log
	cmd.SysProcAttr = SysProcAttr()
	err = cmd.Start()
	log.Close()
	if err != nil {
		return fmt.Errorf("start ipfs daemon: %w", err)
	}
	d.proc, d.done = cmd.Process, make(chan struct{})
	go func() {
		cmd.Wait()
		close(d.done)
	}()
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(100 * time.Millisecond) {
		if !d.running() {
			return fmt.Errorf("ipfs daemon exited before it was ready; log %s:\n%s", d.Log, Tail(d.Log))
		}
		if b, _ := os.ReadFile(d.Log); int64(len(b)) > from && bytes.Contains(b[from:], []byte("Daemon is ready")) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ipfs daemon (PID %d) not ready after %s; log %s:\n%s", d.proc.Pid, readyTimeout, d.Log, Tail(d.Log))
		}
	}
}

// PID is the running daemon's process ID, 0 when it does not run.
func (d *Daemon) PID() int {
	if !d.running() {
		return 0
	}
	return d.proc.Pid
}

// Stop stops the daemon with SIGTERM, then SIGKILL if it has not exited within
// stopTimeout, and waits for it to exit.
func (d *Daemon) Stop() {
	if !d.running() {
		return
	}
	d.Resume() // a paused process takes SIGTERM only once it runs
	d.proc.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		d.logf("ipfs daemon (PID %d) still running %s after SIGTERM: killing it", d.proc.Pid, stopTimeout)
		d.Kill()
	}
}

// Kill kills the daemon with SIGKILL, as a crash would end it, and waits for it to exit.
func (d *Daemon) Kill() {
	if !d.running() {
		return
	}
	d.proc.Signal(syscall.SIGKILL)
	<-d.done
}

// Pause stops the daemon's process without ending it (SIGSTOP): it answers nothing, as a
// daemon that hangs, until Resume.
func (d *Daemon) Pause() {
	d.t.Helper()
	if !d.running() {
		return
	}
	Pause(d.t, d.proc, "ipfs daemon")
}

// Resume lets a paused daemon run again (SIGCONT).
func (d *Daemon) Resume() {
	if d.running() {
		d.proc.Signal(syscall.SIGCONT)
	}
}

// Restart stops the daemon, if it runs, and starts it again with the same peers.
func (d *Daemon) Restart() {
	d.t.Helper()
	d.Stop()
	d.Start(d.peers...)
}

func (d *Daemon) running() bool {
	if d.proc == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Run runs ipfs with args against this node and returns its trimmed standard output.
// While the daemon runs, the command goes through its API.
func (d *Daemon) Run(args ...string) string {
	d.t.Helper()
	out, err := d.Try(args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return out
}

// Try runs ipfs with args against this daemon and returns its trimmed standard output, or
// an error with what it printed.
func (d *Daemon) Try(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(d.bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = d.env, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ipfs %s: %w\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Add adds a file or a directory with Disco's import parameters and returns its CID.
func (d *Daemon) Add(path string) string {
	d.t.Helper()
	return d.Run(append(append([]string{"add", "-r", "-Q"}, AddOptions...), path)...)
}

func (d *Daemon) cleanup() {
	if !d.running() {
		return
	}
	d.Stop()
	if d.t.Failed() {
		d.t.Logf("ipfs daemon log %s, last lines:\n%s", d.Log, Tail(d.Log))
	}
}

// logf logs to the test, or to stderr for a command.
func (d *Daemon) logf(format string, args ...any) {
	if d.t != nil {
		d.t.Logf(format, args...)
	} else {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// FreePorts returns n distinct TCP ports free on 127.0.0.1 at the time of the call.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := Ports(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// Ports returns n distinct TCP ports free on 127.0.0.1 at the time of the call, for
// servers started next. They are below the kernel's range of ephemeral ports where it
// can tell it: there, the outgoing connections of whatever runs beside (other tests)
// could take one before its server listens on it.
func Ports(n int) ([]int, error) {
	lo, hi := belowEphemeral()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		addr := "127.0.0.1:0"
		if hi > lo && tries < 100*n {
			addr = fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if addr != "127.0.0.1:0" {
				continue // taken: another
			}
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// belowEphemeral returns the ports [lo, hi) that Ports picks from: from 10000 up to
// the kernel's first ephemeral port, or none if it cannot tell.
func belowEphemeral() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	first, err := strconv.Atoi(f[0])
	if err != nil || first < 11000 {
		return 0, 0
	}
	return 10000, first
}

// Tail returns the last lines of the file at path, for a failing test's output.
func Tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}
