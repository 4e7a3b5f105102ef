package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kubo is a Kubo daemon run by a test, another IPFS node than Disco's: its own IPFS_PATH,
// API, gateway and swarm on free 127.0.0.1 ports, and nothing that listens elsewhere or
// dials out (no bootstrap peers, no routing, no AutoConf, no telemetry). It is stopped by
// its PID when the test ends.
type kubo struct {
	ID        string // its peer ID
	SwarmPort int
	Log       string

	t    *testing.T
	bin  string
	env  []string
	proc *os.Process
	done chan struct{}
}

// kuboAddOptions are the import parameters of Disco's storage format, as ipfs add flags.
var kuboAddOptions = []string{"--cid-version=1", "--raw-leaves", "--chunker=size-1048576", "--max-file-links=1024"}

// newKubo initialises a Kubo repository and configures it; Start runs the daemon.
func newKubo(t *testing.T) *kubo {
	t.Helper()
	dir := t.TempDir()
	k := &kubo{t: t, bin: kuboTool.path(t), Log: filepath.Join(dir, "kubo.log")}
	// IPFS_TELEMETRY=off as well as the plugin's config: the telemetry plugin reports to
	// an outside server unless told not to.
	k.env = append(cleanEnv("IPFS_", "HOME", "LIBP2P_"),
		"IPFS_PATH="+filepath.Join(dir, "repo"), "IPFS_TELEMETRY=off", "HOME="+dir)
	k.run("init", "--profile", "test", "--empty-repo")
	ports := freePorts(t, 3)
	k.SwarmPort = ports[0]
	for _, kv := range [][2]string{
		{"Plugins.Plugins.telemetry.Config.Mode", `"off"`},
		{"Addresses.Swarm", fmt.Sprintf(`["/ip4/127.0.0.1/tcp/%d"]`, ports[0])},
		{"Addresses.API", fmt.Sprintf(`"/ip4/127.0.0.1/tcp/%d"`, ports[1])},
		{"Addresses.Gateway", fmt.Sprintf(`"/ip4/127.0.0.1/tcp/%d"`, ports[2])},
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
		k.run("config", "--json", kv[0], kv[1])
	}
	k.ID = k.run("config", "Identity.PeerID")
	t.Cleanup(k.cleanup)
	return k
}

// PeerAddr is the daemon's swarm address with /p2p/<id>, for Disco's peers.
func (k *kubo) PeerAddr() string {
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", k.SwarmPort, k.ID)
}

// Start runs the daemon, peered with peers (full multiaddrs with /p2p/<id>), and waits
// until it is ready.
func (k *kubo) Start(peers ...string) {
	t := k.t
	t.Helper()
	type peer struct {
		ID    string
		Addrs []string
	}
	var ps []peer
	for _, p := range peers {
		addr, id, ok := strings.Cut(p, "/p2p/")
		if !ok {
			t.Fatalf("peer address %s has no /p2p/<id>", p)
		}
		ps = append(ps, peer{ID: id, Addrs: []string{addr}})
	}
	b, err := json.Marshal(ps)
	if err != nil {
		t.Fatal(err)
	}
	k.run("config", "--json", "Peering.Peers", string(b))

	log, err := os.OpenFile(k.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	from, _ := log.Seek(0, io.SeekEnd)
	cmd := exec.Command(k.bin, "daemon", "--migrate=false")
	cmd.Env, cmd.Stdout, cmd.Stderr = k.env, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	log.Close()
	if err != nil {
		t.Fatalf("start ipfs daemon: %v", err)
	}
	k.proc, k.done = cmd.Process, make(chan struct{})
	go func() {
		cmd.Wait()
		close(k.done)
	}()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		select {
		case <-k.done:
			t.Fatalf("ipfs daemon exited before it was ready; log %s:\n%s", k.Log, tail(k.Log))
		default:
		}
		if b, _ := os.ReadFile(k.Log); int64(len(b)) > from && bytes.Contains(b[from:], []byte("Daemon is ready")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipfs daemon (PID %d) not ready after a minute; log %s:\n%s", k.proc.Pid, k.Log, tail(k.Log))
		}
	}
}

// run runs ipfs with args against this node and returns its trimmed standard output.
func (k *kubo) run(args ...string) string {
	k.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(k.bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = k.env, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		k.t.Fatalf("ipfs %s: %v\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return strings.TrimSpace(stdout.String())
}

// Add adds a file or a directory with Disco's import parameters and returns its CID.
func (k *kubo) Add(path string) string {
	k.t.Helper()
	return k.run(append(append([]string{"add", "-r", "-Q"}, kuboAddOptions...), path)...)
}

func (k *kubo) cleanup() {
	if k.proc == nil {
		return
	}
	select {
	case <-k.done:
		return
	default:
	}
	k.proc.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(30 * time.Second):
		k.proc.Signal(syscall.SIGKILL)
		<-k.done
	}
	if k.t.Failed() {
		k.t.Logf("ipfs daemon log %s, last lines:\n%s", k.Log, tail(k.Log))
	}
}
