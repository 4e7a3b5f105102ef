package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/discoregistry/disco/internal/kubotest"
)

// upstreamOptions change how a test's upstream registry runs.
type upstreamOptions struct {
	// User and Password, if set, are the one account of an htpasswd file the registry
	// asks for.
	User, Password string
	// IP is the address it listens on, 127.0.0.1 unless set.
	IP string
	// NetNS, if set, is the network namespace it runs in (ip netns exec).
	NetNS string
	// YAML is added at the top level of its configuration, after the rest.
	YAML string
}

// upstream is Distribution's registry, the release Disco is built on, run by a test as
// the registry a mirror pulls through from: filesystem storage in the test's directory,
// its access log on, so that the test can count what it sent.
type upstream struct {
	Host string // ip:port
	Log  string // stdout and stderr of every run, the access log among them

	t    *testing.T
	cmd  []string
	env  []string
	proc *os.Process
	done chan struct{}
}

// startUpstream starts the registry and waits until it answers GET /v2/. It is stopped
// when the test ends.
func startUpstream(t *testing.T, o upstreamOptions) *upstream {
	t.Helper()
	bin := kubotest.Registry.Path(t)
	dir := t.TempDir()
	ip := o.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	u := &upstream{Host: fmt.Sprintf("%s:%d", ip, kubotest.FreePorts(t, 1)[0]), Log: filepath.Join(dir, "registry.log"), t: t}
	auth := ""
	if o.User != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(o.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, fmt.Appendf(nil, "%s:%s\n", o.User, hash), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth: {htpasswd: {realm: upstream, path: %s}}\n", htpasswd)
	}
	config := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(config, fmt.Appendf(nil, `version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
http:
  addr: %s
%s%s
`, filepath.Join(dir, "data"), u.Host, auth, o.YAML), 0o644); err != nil {
		t.Fatal(err)
	}
	u.cmd = []string{bin, "serve", config}
	if o.NetNS != "" {
		u.cmd = append([]string{"ip", "netns", "exec", o.NetNS}, u.cmd...)
	}
	u.env = append(kubotest.CleanEnv("REGISTRY_", "HOME", "OTEL_"), "HOME="+dir, "OTEL_TRACES_EXPORTER=none")
	t.Cleanup(func() {
		if u.running() {
			u.Stop()
		}
		if t.Failed() {
			t.Logf("upstream %s log %s, last lines:\n%s", u.Host, u.Log, kubotest.Tail(u.Log))
		}
	})
	u.Start()
	return u
}

// Start starts the registry, with the data it had, and waits until it answers.
func (u *upstream) Start() {
	t := u.t
	t.Helper()
	log, err := os.OpenFile(u.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(u.cmd[0], u.cmd[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = u.env, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	log.Close()
	if err != nil {
		t.Fatalf("start the upstream registry: %v", err)
	}
	u.proc, u.done = cmd.Process, make(chan struct{})
	go func() {
		cmd.Wait()
		close(u.done)
	}()
	client := http.Client{Timeout: 5 * time.Second}
	for deadline := time.Now().Add(startTimeout); ; time.Sleep(100 * time.Millisecond) {
		if !u.running() {
			t.Fatalf("the upstream registry exited at start; log %s:\n%s", u.Log, kubotest.Tail(u.Log))
		}
		if res, err := client.Get("http://" + u.Host + "/v2/"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK || res.StatusCode == http.StatusUnauthorized {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upstream registry does not answer on %s; log %s:\n%s", u.Host, u.Log, kubotest.Tail(u.Log))
		}
	}
}

// Stop stops the registry by its PID.
func (u *upstream) Stop() {
	u.t.Helper()
	u.proc.Signal(syscall.SIGTERM)
	select {
	case <-u.done:
	case <-time.After(stopTimeout):
		u.proc.Kill()
		<-u.done
		u.t.Errorf("the upstream registry ignored SIGTERM for %s", stopTimeout)
	}
}

func (u *upstream) running() bool {
	if u.done == nil {
		return false
	}
	select {
	case <-u.done:
		return false
	default:
		return true
	}
}

// blobLine and manifestLine match the lines of Distribution's access log (the combined
// log format) for a blob or a manifest sent by digest:
// "GET /v2/<name>/blobs/<digest> HTTP/1.1" 200 <bytes>.
var (
	blobLine     = regexp.MustCompile(`"GET /v2/\S+/blobs/(sha256:[0-9a-f]{64}) HTTP/[0-9.]+" 200 ([0-9]+)`)
	manifestLine = regexp.MustCompile(`"GET /v2/\S+/manifests/(sha256:[0-9a-f]{64}) HTTP/[0-9.]+" 200 ([0-9]+)`)
)

// blobGets returns, by digest, how many times the registry's access log says it sent
// each blob, and the bytes it sent of blobs in all.
func (u *upstream) blobGets() (map[string]int, int64) {
	u.t.Helper()
	return u.gets(blobLine)
}

// manifestGets returns, by digest, how many times the registry's access log says it
// sent each manifest asked for by digest.
func (u *upstream) manifestGets() map[string]int {
	u.t.Helper()
	gets, _ := u.gets(manifestLine)
	return gets
}

// gets counts the lines of the access log that line matches, by their digest, and sums
// their bytes.
func (u *upstream) gets(line *regexp.Regexp) (map[string]int, int64) {
	u.t.Helper()
	f, err := os.Open(u.Log)
	if err != nil {
		u.t.Fatal(err)
	}
	defer f.Close()
	gets := map[string]int{}
	var total int64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			gets[m[1]]++
			n, _ := strconv.ParseInt(m[2], 10, 64)
			total += n
		}
	}
	if err := sc.Err(); err != nil {
		u.t.Fatal(err)
	}
	return gets, total
}
