package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/discoregistry/disco/internal/kubotest"
	"github.com/discoregistry/disco/internal/netns"
)

const (
	startTimeout = 2 * time.Minute
	stopTimeout  = time.Minute // more than http.draintimeout's 30s default
)

// baseConfig is every test Disco's configuration before discoOptions.YAML is merged in,
// given the address it listens on and its swarm port. Only the host of http.addr counts:
// the port is $DISCO_PORT.
const baseConfig = `
version: 0.1
log: {level: info, accesslog: {disabled: true}}
http: {addr: "%[1]s:0"}
storage:
  delete: {enabled: true}
  ipfs:
    node:
      swarm: [/ip4/%[1]s/tcp/%[2]d]
`

// discoOptions changes how a test Disco runs.
type discoOptions struct {
	// YAML is merged over baseConfig key by key: mappings merge, other values replace.
	YAML string
	// Peers are storage.ipfs.node.peers, full multiaddrs with /p2p/<id> (see Disco.PeerAddr).
	Peers []string
	// NoConfig runs Disco as on a fresh machine: no configuration file, no
	// REGISTRY_CONFIGURATION_PATH and no DISCO_PORT, so it serves on port 1970 and its
	// node listens on 127.0.0.1:4001.
	NoConfig bool
	// File is a configuration file to use as it is, instead of baseConfig and YAML.
	File string
	// Env are more environment variables, NAME=value.
	Env []string
	// Netns runs Disco in this network namespace, listening on its address instead of
	// 127.0.0.1.
	Netns *netns.Namespace
}

// Disco is a disco process run by a test, with its own HOME and loopback ports.
type Disco struct {
	Host      string // the registry, 127.0.0.1:port (or the address of its Netns)
	Home      string // $HOME, which holds ~/.disco
	Config    string // the configuration file; empty with NoConfig
	Log       string // stdout and stderr of every run, appended
	SwarmPort int    // the IPFS node's TCP port
	PID       int    // of the running process; 0 when stopped

	t    *testing.T
	opts discoOptions
	ip   string // the address it listens on
	env  []string
	proc *os.Process
	done chan struct{} // closed when the process has exited
	err  error         // how it exited, once done is closed
}

// startDisco starts a Disco and waits until it serves GET /v2/. It is stopped when the
// test ends.
func startDisco(t *testing.T, opts discoOptions) *Disco {
	t.Helper()
	d := newDisco(t, opts)
	d.Start()
	return d
}

// newDisco prepares a Disco without starting it: its HOME, ports and configuration are
// ready, so ID and PeerAddr work, and peers can be added before Start. Two Discos peered
// with each other:
//
//	a, b := newDisco(t, discoOptions{}), newDisco(t, discoOptions{})
//	a.AddPeers(b.PeerAddr())
//	b.AddPeers(a.PeerAddr())
//	a.Start()
//	b.Start()
func newDisco(t *testing.T, opts discoOptions) *Disco {
	t.Helper()
	dir := t.TempDir()
	d := &Disco{
		Home: filepath.Join(dir, "home"),
		Log:  filepath.Join(dir, "disco.log"),
		t:    t,
		opts: opts,
		ip:   "127.0.0.1",
	}
	if opts.Netns != nil {
		d.ip = opts.Netns.Addr.String()
	}
	if err := os.Mkdir(d.Home, 0o755); err != nil {
		t.Fatal(err)
	}
	env := kubotest.CleanEnv("HOME", "REGISTRY_", "DISCO_", "IPFS_")
	d.env = append(env, "HOME="+d.Home)
	if opts.NoConfig {
		d.Host, d.SwarmPort = "127.0.0.1:1970", 4001
	} else {
		ports := kubotest.FreePorts(t, 2)
		d.Host, d.SwarmPort = d.ip+":"+strconv.Itoa(ports[0]), ports[1]
		d.Config = filepath.Join(dir, "config.yaml")
		d.env = append(d.env, "REGISTRY_CONFIGURATION_PATH="+d.Config, "DISCO_PORT="+strconv.Itoa(ports[0]))
		d.writeConfig()
	}
	d.env = append(d.env, opts.Env...)
	t.Cleanup(d.cleanup)
	return d
}

// AddPeers adds storage.ipfs.node.peers; they apply from the next Start or Restart.
func (d *Disco) AddPeers(addrs ...string) {
	d.t.Helper()
	d.opts.Peers = append(d.opts.Peers, addrs...)
	d.writeConfig()
}

func (d *Disco) writeConfig() {
	t := d.t
	t.Helper()
	if d.opts.NoConfig {
		t.Fatal("a Disco with NoConfig has no configuration file")
	}
	if d.opts.File != "" {
		b, err := os.ReadFile(d.opts.File)
		if err == nil {
			err = os.WriteFile(d.Config, b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	var conf, extra map[string]any
	if err := yaml.Unmarshal(fmt.Appendf(nil, baseConfig, d.ip, d.SwarmPort), &conf); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(d.opts.YAML), &extra); err != nil {
		t.Fatalf("discoOptions.YAML: %v", err)
	}
	merge(conf, extra)
	if len(d.opts.Peers) > 0 {
		merge(conf, map[string]any{"storage": map[string]any{"ipfs": map[string]any{
			"node": map[string]any{"peers": d.opts.Peers}}}})
	}
	b, err := yaml.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.Config, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// merge merges src into dst: mappings recursively, other values replace.
func merge(dst, src map[string]any) {
	for k, v := range src {
		sub, ok := v.(map[string]any)
		if old, isMap := dst[k].(map[string]any); ok && isMap {
			merge(old, sub)
			continue
		}
		dst[k] = v
	}
}

// Start starts the process and waits until it is ready.
func (d *Disco) Start() {
	t := d.t
	t.Helper()
	if d.running() {
		t.Fatalf("disco %s is already running as PID %d", d.Host, d.PID)
	}
	log, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(log, "=== e2e: start disco on %s at %s\n", d.Host, time.Now().Format(time.RFC3339Nano))
	from, _ := log.Seek(0, io.SeekEnd)
	cmd := exec.Command(discoBin())
	if d.opts.Netns != nil {
		cmd = d.opts.Netns.Command(discoBin()) // its PID is disco's
	}
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = d.Home, d.env, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // if the test binary dies
	err = cmd.Start()
	log.Close()
	if err != nil {
		t.Fatalf("start disco: %v", err)
	}
	d.proc, d.PID = cmd.Process, cmd.Process.Pid
	done := make(chan struct{})
	d.done = done
	go func() {
		d.err = cmd.Wait()
		close(done)
	}()
	d.waitReady(from)
}

// waitReady waits for the "registry listening" line of this run and a 200 from GET /v2/.
func (d *Disco) waitReady(from int64) {
	t := d.t
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-d.done:
			d.PID = 0
			t.Fatalf("disco exited before it was ready (%v); log %s:\n%s", d.err, d.Log, d.logTail())
		default:
		}
		if strings.Contains(d.logFrom(from), "registry listening") && d.ping() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("disco %s (PID %d) not ready after %s; log %s:\n%s", d.Host, d.PID, startTimeout, d.Log, d.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *Disco) ping() bool {
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(d.URL("/v2/"))
	if err != nil {
		return false
	}
	res.Body.Close()
	// A registry with auth configured answers an anonymous GET /v2/ with a challenge.
	return res.StatusCode == http.StatusOK || res.StatusCode == http.StatusUnauthorized
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *Disco) Stop() {
	t := d.t
	t.Helper()
	if !d.running() {
		t.Fatalf("disco %s is not running", d.Host)
	}
	if !d.terminate() {
		t.Fatalf("disco %s did not stop within %s of SIGTERM; log %s:\n%s", d.Host, stopTimeout, d.Log, d.logTail())
	}
	if d.err != nil {
		t.Fatalf("disco %s exited with %v after SIGTERM; log %s:\n%s", d.Host, d.err, d.Log, d.logTail())
	}
}

// Kill sends SIGKILL and waits for the process to die.
func (d *Disco) Kill() {
	d.t.Helper()
	if !d.running() {
		d.t.Fatalf("disco %s is not running", d.Host)
	}
	d.proc.Signal(syscall.SIGKILL)
	<-d.done
	d.PID = 0
}

// Restart starts Disco again, with the same HOME, configuration and ports, after Stop or
// Kill.
func (d *Disco) Restart() {
	d.t.Helper()
	d.Start()
}

func (d *Disco) running() bool {
	if d.done == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// terminate sends SIGTERM and waits for the process to exit, sending SIGKILL after
// stopTimeout; it reports whether SIGTERM was enough.
func (d *Disco) terminate() bool {
	defer func() { d.PID = 0 }()
	d.proc.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return true
	case <-time.After(stopTimeout):
		d.proc.Signal(syscall.SIGKILL)
		<-d.done
		return false
	}
}

func (d *Disco) cleanup() {
	if d.running() {
		d.terminate()
	}
	if d.t.Failed() {
		d.t.Logf("disco %s log %s, last lines:\n%s", d.Host, d.Log, d.logTail())
	}
}

// URL returns the registry URL of path, such as "/v2/".
func (d *Disco) URL(path string) string { return "http://" + d.Host + path }

// identity is what disco id prints.
type identity struct {
	ID        string   `json:"id"`
	Addresses []string `json:"addresses"`
}

// Command runs disco with args and this Disco's environment, and returns its stdout, or
// its stderr with the error.
func (d *Disco) Command(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(discoBin(), args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = d.Home, d.env, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stderr.String(), fmt.Errorf("disco %s: %w", strings.Join(args, " "), err)
	}
	return stdout.String(), nil
}

// ID runs disco id with this Disco's environment.
func (d *Disco) ID() identity {
	t := d.t
	t.Helper()
	out, err := d.Command("id")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var id identity
	if err := json.Unmarshal([]byte(out), &id); err != nil || id.ID == "" {
		t.Fatalf("disco id printed %q (%v), want {\"id\": ..., \"addresses\": [...]}", out, err)
	}
	return id
}

// PeerAddr is the address other Discos list in their peers: this node's swarm address
// with /p2p/<id>.
func (d *Disco) PeerAddr() string {
	d.t.Helper()
	id := d.ID()
	want := fmt.Sprintf("/ip4/%s/tcp/%d/p2p/%s", d.ip, d.SwarmPort, id.ID)
	for _, a := range id.Addresses {
		if a == want {
			return a
		}
	}
	d.t.Fatalf("disco id lists %q, want %s among them", id.Addresses, want)
	return ""
}

func (d *Disco) logFrom(offset int64) string {
	b, _ := os.ReadFile(d.Log)
	if offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}

// logTail returns the last lines of the log.
func (d *Disco) logTail() string { return kubotest.Tail(d.Log) }
