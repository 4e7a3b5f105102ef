package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/discoregistry/disco/internal/kubotest"
	"github.com/discoregistry/disco/internal/netns"
)

// A registry is a registry process on a free loopback port, started and stopped by its
// PID. Its config, data and log are in dir.
type registry struct {
	name  string
	dir   string
	host  string           // 127.0.0.1:port
	debug string           // debug address with /debug/pprof/, if any
	ipfs  string           // disco: its IPFS node's address, /ip4/127.0.0.1/tcp/<port>/p2p/<id>
	ns    *netns.Namespace // the network namespace it runs in, if not discobench's
	cmd   *exec.Cmd
	done  chan struct{} // closed when the process has exited

	bin, config string // what start was given, to start it again
	env         []string
}

// startDisco starts disco with its own HOME in dir and an embedded node on loopback,
// peered with the nodes of peers.
func startDisco(ctx context.Context, bin, dir string, peers ...*registry) (*registry, error) {
	var addrs []string
	for _, p := range peers {
		addrs = append(addrs, p.ipfs)
	}
	r, err := onFreePorts(3, func(ports []int) (*registry, error) {
		return launchDiscoOn(ctx, bin, dir, ports[1:], fmt.Sprintf(`    node:
      swarm: [/ip4/127.0.0.1/tcp/%d]
      peers: [%s]
`, ports[0], strings.Join(addrs, ", ")))
	})
	if err != nil {
		return nil, err
	}
	id, err := discoID(ctx, bin, append(r.env, "REGISTRY_CONFIGURATION_PATH="+filepath.Join(dir, "config.yml")))
	if err != nil {
		r.stop()
		return nil, err
	}
	r.ipfs = id
	return r, nil
}

// launchDisco starts disco with its own HOME in dir, on free loopback ports, with ipfs
// as the body of its storage.ipfs section.
func launchDisco(ctx context.Context, bin, dir, ipfs string) (*registry, error) {
	return onFreePorts(2, func(ports []int) (*registry, error) {
		return launchDiscoOn(ctx, bin, dir, ports, ipfs)
	})
}

// launchDiscoOn is launchDisco on ports, the registry's and its debug server's.
func launchDiscoOn(ctx context.Context, bin, dir string, ports []int, ipfs string) (*registry, error) {
	r := &registry{name: "disco", dir: dir, host: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		debug: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	// http.addr gives only the host; the port is $DISCO_PORT.
	config := fmt.Sprintf(`version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  ipfs:
%shttp:
  addr: 127.0.0.1:5000
  debug: {addr: %s}
`, ipfs, r.debug)
	env := []string{"HOME=" + dir, "DISCO_PORT=" + strconv.Itoa(ports[0])}
	if err := r.start(ctx, bin, config, env); err != nil {
		return nil, err
	}
	return r, nil
}

// discoID returns the first address "disco id" prints.
func discoID(ctx context.Context, bin string, env []string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, "id")
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("disco id: %w", err)
	}
	var id struct{ Addresses []string }
	if err := json.Unmarshal(out, &id); err != nil || len(id.Addresses) == 0 {
		return "", fmt.Errorf("disco id printed %q", out)
	}
	return id.Addresses[0], nil
}

// startReference starts Distribution's registry with the filesystem driver in dir. It has
// no peers: registries of its kind share nothing.
func startReference(ctx context.Context, bin, dir string, _ ...*registry) (*registry, error) {
	return onFreePorts(1, func(ports []int) (*registry, error) {
		return startReferenceOn(ctx, bin, dir, ports[0])
	})
}

func startReferenceOn(ctx context.Context, bin, dir string, port int) (*registry, error) {
	r := &registry{name: "reference", dir: dir, host: fmt.Sprintf("127.0.0.1:%d", port)}
	config := fmt.Sprintf(`version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
http:
  addr: %s
`, filepath.Join(dir, "data"), r.host)
	if err := r.start(ctx, bin, config, []string{"HOME=" + dir, "OTEL_TRACES_EXPORTER=none"}); err != nil {
		return nil, err
	}
	return r, nil
}

// start writes the config, starts "bin serve" with $REGISTRY_CONFIGURATION_PATH naming
// it (both registries read that) and waits until GET /v2/ answers 200. On failure the
// process is gone.
func (r *registry) start(ctx context.Context, bin, config string, env []string) error {
	r.bin, r.config, r.env = bin, config, env
	cfg := filepath.Join(r.dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(r.dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own copy
	r.cmd = exec.Command(bin, "serve")
	if r.ns != nil {
		r.cmd = r.ns.Command(bin, "serve")
	}
	r.cmd.Env = append(cleanEnv(), append(env, "REGISTRY_CONFIGURATION_PATH="+cfg)...)
	r.cmd.Stdout, r.cmd.Stderr = log, log
	// Its own process group, so that Ctrl-C reaches discobench only and discobench stops
	// the registry; and a SIGTERM should discobench die without doing so.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", r.name, err)
	}
	r.done = make(chan struct{})
	go func() { r.cmd.Wait(); close(r.done) }()

	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + r.host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-r.done:
			err := fmt.Errorf("%s exited at start-up (%v); its log:\n%s", r.name, r.cmd.ProcessState, r.logTail())
			if strings.Contains(r.logTail(), "address already in use") {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		case <-ctx.Done():
			r.stop()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.stop()
			return fmt.Errorf("%s did not answer GET /v2/ within 2 minutes; its log:\n%s", r.name, r.logTail())
		}
	}
}

// stop sends SIGTERM and, after 30s, SIGKILL.
func (r *registry) stop() error {
	_, err := r.stopTimed()
	return err
}

// stopTimed stops the registry as stop does and returns how long it took to exit.
func (r *registry) stopTimed() (time.Duration, error) {
	if r.cmd == nil || r.cmd.Process == nil {
		return 0, nil
	}
	start := time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, err
	}
	select {
	case <-r.done:
		return time.Since(start), nil
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
		return time.Since(start), fmt.Errorf("%s (pid %d) ignored SIGTERM for 30s, killed", r.name, r.cmd.Process.Pid)
	}
}

// restart starts the registry again, on its data, once it has stopped, and returns how
// long it took to answer.
func (r *registry) restart(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if err := r.start(ctx, r.bin, r.config, r.env); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// rss returns the process's resident set size in MiB.
func (r *registry) rss() (float64, error) { return r.status("VmRSS:") }

// alive reports an error if the process has exited.
func (r *registry) alive() error {
	select {
	case <-r.done:
		return fmt.Errorf("%s exited (%v); its log:\n%s", r.name, r.cmd.ProcessState, r.logTail())
	default:
		return nil
	}
}

// resetPeakRSS resets the process's peak resident set size (VmHWM).
func (r *registry) resetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", r.cmd.Process.Pid), []byte("5"), 0)
}

// peakRSS returns the process's peak resident set size in MiB.
func (r *registry) peakRSS() (float64, error) { return r.status("VmHWM:") }

// status returns a figure of /proc/<pid>/status given in kB, in MiB.
func (r *registry) status(key string) (float64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, key); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/<pid>/status", key)
}

func (r *registry) logTail() string {
	data, _ := os.ReadFile(filepath.Join(r.dir, "log"))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return "  " + strings.Join(lines[max(0, len(lines)-20):], "\n  ")
}

// cleanEnv is discobench's environment without variables that would change how a
// registry is configured.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") && !strings.HasPrefix(kv, "DISCO_") &&
			!strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "IPFS_") {
			env = append(env, kv)
		}
	}
	return env
}

// errPortTaken is a registry that could not listen on a port found free: something took
// it in between, as the tests running beside a benchmark do.
var errPortTaken = errors.New("a port found free was taken")

// onFreePorts runs start on n free loopback ports, and again on others, a few times, when
// one was taken before start listened on it.
func onFreePorts(n int, start func(ports []int) (*registry, error)) (*registry, error) {
	for try := 1; ; try++ {
		ports := make([]int, n)
		for i := range ports {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			ports[i] = p
		}
		r, err := start(ports)
		if !errors.Is(err, errPortTaken) || try == 3 {
			return r, err
		}
		progress("a port found free was taken before the registry listened on it; trying others")
	}
}

func freePort() (int, error) {
	ports, err := kubotest.Ports(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// cpuTicks returns the CPU time the process has used, in clock ticks.
func (r *registry) cpuTicks() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command's name, which is in parentheses and may hold spaces:
	// utime and stime are the 12th and 13th of them.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", r.cmd.Process.Pid, b)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	return u + s, errors.Join(err1, err2)
}

// settle waits until the process has used less than a tenth of a CPU for three seconds
// in a row (Disco builds its index after a start), or until limit, and returns how long
// it waited.
func (r *registry) settle(ctx context.Context, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	last, err := r.cpuTicks()
	if err != nil {
		return 0, err
	}
	for quiet := 0; quiet < 3 && time.Since(start) < limit; {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-r.done:
			return 0, r.alive()
		case <-time.After(time.Second):
		}
		now, err := r.cpuTicks()
		if err != nil {
			return 0, err
		}
		if now-last < 10 { // ticks are of 10 ms: 100 a second
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
	return time.Since(start), nil
}
