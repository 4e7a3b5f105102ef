package e2e

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/kubotest"
)

// TestSystemdUnit checks dist/systemd: systemd-analyze verify finds nothing wrong with
// the unit, it has the hardening docs/systemd.md lists, its config passes disco config
// check, and its ExecStart, run with its Environment and the state and config
// directories moved to temporary ones, serves the registry and stops on SIGTERM. CI has
// no systemd running, so the unit is not started by systemd itself.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	analyze := lookTool(t, "systemd-analyze")
	unitText, err := os.ReadFile("../dist/systemd/disco.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := parseUnit(t, unitText)

	// systemd-analyze wants the command to exist.
	dir := t.TempDir()
	verify := filepath.Join(dir, "disco.service")
	os.WriteFile(verify, bytes.ReplaceAll(unitText, []byte("/usr/local/bin/disco"), []byte(discoBin())), 0o644)
	out, err := exec.Command(analyze, "verify", verify).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	for key, want := range map[string]string{
		"User": "disco", "Group": "disco", "StateDirectory": "disco", "ConfigurationDirectory": "disco",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
		"MemoryDenyWriteExecute": "yes", "SystemCallFilter": "@system-service", "KillSignal": "SIGTERM",
	} {
		if got, ok := unit[key]; !ok || got[0] != want {
			t.Errorf("disco.service: %s=%q, want %q", key, got, want)
		}
	}

	// The config, and the command with its environment, on directories of the test's.
	state, etc := filepath.Join(dir, "state"), filepath.Join(dir, "etc")
	os.MkdirAll(state, 0o700)
	os.MkdirAll(etc, 0o755)
	conf, err := os.ReadFile("../dist/systemd/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ports := kubotest.FreePorts(t, 2)
	moved := func(s string) string {
		s = strings.ReplaceAll(s, "/var/lib/disco", state)
		s = strings.ReplaceAll(s, "/etc/disco", etc)
		return strings.ReplaceAll(s, "/tcp/4001", "/tcp/"+strconv.Itoa(ports[1]))
	}
	os.WriteFile(filepath.Join(etc, "config.yaml"), []byte(moved(string(conf))), 0o640)
	if out, err := exec.Command(discoBin(), "config", "check", filepath.Join(etc, "config.yaml")).CombinedOutput(); err != nil {
		t.Errorf("disco config check dist/systemd/config.yaml: %v\n%s", err, out)
	}

	args := strings.Fields(unit["ExecStart"][0])
	if args[0] != "/usr/local/bin/disco" {
		t.Fatalf("ExecStart=%s does not run disco", unit["ExecStart"][0])
	}
	cmd := exec.Command(discoBin(), args[1:]...)
	cmd.Env = append(kubotest.CleanEnv("HOME", "REGISTRY_", "DISCO_", "IPFS_"), "DISCO_PORT="+strconv.Itoa(ports[0]))
	for _, e := range unit["Environment"] {
		cmd.Env = append(cmd.Env, strings.Fields(moved(e))...)
	}
	cmd.Dir = moved(unit["WorkingDirectory"][0])
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	url := "http://127.0.0.1:" + strconv.Itoa(ports[0]) + "/debug/health"
	for deadline := time.Now().Add(startTimeout); ; time.Sleep(200 * time.Millisecond) {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("disco as the unit runs it exited: %v\n%s", err, &log)
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("disco as the unit runs it is not healthy after %s:\n%s", startTimeout, &log)
		}
	}
	if _, err := os.Stat(filepath.Join(state, "ipfs")); err != nil {
		t.Errorf("the node's repository is not in the state directory: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("disco exited with %v after the unit's KillSignal:\n%s", err, &log)
		}
	case <-time.After(stopTimeout):
		cmd.Process.Kill()
		t.Errorf("disco did not stop within %s of SIGTERM", stopTimeout)
	}
}

// parseUnit returns the values of a unit file's keys, in order, for every section.
func parseUnit(t *testing.T, text []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("disco.service: %q is not KEY=VALUE", line)
		}
		out[k] = append(out[k], v)
	}
	return out
}
