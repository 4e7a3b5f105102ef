package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/config"
	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/mirror"
	"github.com/discoregistry/disco/internal/server"
)

// runDisco runs disco with args in the environment vars and returns its stdout and error.
func runDisco(t *testing.T, vars map[string]string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(args, &env{getenv: func(k string) string { return vars[k] }, stdout: &stdout, stderr: &stderr})
	if stderr.Len() > 0 {
		t.Errorf("disco %s wrote to stderr, which is no terminal:\n%s", strings.Join(args, " "), &stderr)
	}
	return stdout.String(), err
}

func TestHelp(t *testing.T) {
	out, err := runDisco(t, nil, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if !strings.Contains(out, "  "+c.name+" ") {
			t.Errorf("disco --help does not list %s:\n%s", c.name, out)
		}
		for _, help := range [][]string{append(strings.Fields(c.name), "--help"), append([]string{"help"}, strings.Fields(c.name)...)} {
			out, err := runDisco(t, nil, help...)
			if err != nil {
				t.Errorf("disco %s: %v", strings.Join(help, " "), err)
			}
			if want := "usage: disco " + c.name; !strings.HasPrefix(out, want) || !strings.Contains(out, c.about) {
				t.Errorf("disco %s printed\n%s\nwant %q and what the command does", strings.Join(help, " "), out, want)
			}
		}
	}
	if _, err := runDisco(t, nil, "gc", "--no-such-flag"); err == nil || !strings.Contains(err.Error(), "usage: disco gc") {
		t.Errorf("disco gc --no-such-flag: %v, want an error with the usage", err)
	}
	if _, err := runDisco(t, nil, "version", "extra"); err == nil {
		t.Error("disco version extra: no error")
	}
}

func TestInit(t *testing.T) {
	home := t.TempDir()
	vars := map[string]string{"HOME": home}
	path := filepath.Join(home, ".disco", "config.yaml")
	out, err := runDisco(t, vars, "init")
	if err != nil || !strings.Contains(out, path) {
		t.Fatalf("disco init: %q, %v; want %s written", out, err, path)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, defaultConfig) {
		t.Fatalf("%s: %v; want the default config", path, err)
	}

	os.WriteFile(path, []byte("mine\n"), 0o600)
	if _, err := runDisco(t, vars, "init"); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("disco init over an existing file: %v, want a refusal that names --force", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "mine\n" {
		t.Errorf("disco init without --force changed the file to %q", b)
	}
	if _, err := runDisco(t, vars, "init", "--force"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, defaultConfig) {
		t.Error("disco init --force did not overwrite the file")
	}

	other := filepath.Join(home, "etc", "disco.yaml")
	vars["REGISTRY_CONFIGURATION_PATH"] = other
	if _, err := runDisco(t, vars, "init"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("disco init ignored $REGISTRY_CONFIGURATION_PATH: %v", err)
	}
}

// TestDefaultConfig checks that what disco init writes is the built-in defaults.
func TestDefaultConfig(t *testing.T) {
	vars := map[string]string{"HOME": "/home/u"}
	c, err := config.Parse(defaultConfig, func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Notes) > 0 {
		t.Errorf("the default config has notes: %v", c.Notes)
	}
	builtin, err := config.Parse(nil, func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		key       string
		got, want any
	}{
		{"listen", c.Net + " " + c.Addr, builtin.Net + " " + builtin.Addr},
		{"log.level", c.Registry.Log.Level, builtin.Registry.Log.Level},
		{"storage.delete", c.Registry.Storage["delete"]["enabled"], false},
		{"disco.clonetimeout", c.Disco.CloneTimeout, global.DefaultCloneTimeout},
		{"disco.clonemaxblob", int64(c.Disco.CloneMaxBlob), int64(global.DefaultCloneMaxBlob)},
		{"disco.clonemaxsize", int64(c.Disco.CloneMaxSize), int64(global.DefaultCloneMaxSize)},
		{"disco.maxuploads", c.Disco.MaxUploads, server.DefaultMaxUploads},
		{"disco.bodytimeout", c.Disco.BodyTimeout, server.DefaultBodyTimeout},
		{"disco.upstreamtimeout", c.Disco.UpstreamTimeout, mirror.DefaultUpstreamTimeout},
		{"disco.peertimeout", c.Disco.PeerTimeout, mirror.DefaultPeerTimeout},
		{"proxy", c.Registry.Proxy.RemoteURL, ""},
		{"disco", c.Disco.NoClone || c.Disco.HashesOnly, false},
		{"ui.enabled", c.UI.Enabled, builtin.UI.Enabled},
		{"http.draintimeout", c.Registry.HTTP.DrainTimeout, 30 * time.Second},
		{"http.headers", len(c.Registry.HTTP.Headers), 0},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v in the default config, built in %v", tt.key, tt.got, tt.want)
		}
	}
	if !sameIPFS(c.IPFS, builtin.IPFS) {
		t.Errorf("storage.ipfs = %+v in the default config, built in %+v", c.IPFS, builtin.IPFS)
	}
}

func sameIPFS(a, b config.IPFS) bool {
	return a.Node.Path == b.Node.Path && strings.Join(a.Node.Swarm, " ") == strings.Join(b.Node.Swarm, " ") &&
		len(a.Node.Peers) == len(b.Node.Peers) && a.Node.Public == b.Node.Public && a.Uploads == b.Uploads &&
		(a.RootDirectory == b.RootDirectory || a.RootDirectory == "/" && b.RootDirectory == "")
}

// originalDefault is the original Disco's default config, as its README has it once its
// tab-indented comment lines are indented with spaces.
func originalDefault(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/original-default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	withoutRouter := bytes.Replace(originalDefault(t),
		[]byte("    router:\n      nodes:\n        - url: http://localhost:5001\n"), nil, 1)
	if bytes.Equal(withoutRouter, originalDefault(t)) {
		t.Fatal("testdata/original-default.yaml has no storage.ipfs.router section to remove")
	}
	for _, tt := range []struct {
		name string
		file string
		ok   bool
		want []string // lines of the output, as regular expressions
	}{
		{"as the original's README writes it", "testdata/original-readme.yaml", false, []string{
			`original-readme.yaml: yaml: line 12: .*\(line 12 is indented with a tab: YAML indents with spaces only`,
		}},
		{"the original's default", "testdata/original-default.yaml", true, []string{
			`: note: http.addr \(line 45\): only the host is used: the registry listens on port 1970 \(\$DISCO_PORT, default 1970\), not 5000`,
			`original-default.yaml: ok`,
		}},
		{"the original's default without router", file("original-norouter.yaml", string(withoutRouter)), true, []string{
			`: note: http.addr \(line 42\): only the host is used: the registry listens on port 1970 \(\$DISCO_PORT, default 1970\), not 5000`,
			`original-norouter.yaml: ok`,
		}},
		{"Disco's default", file("default.yaml", string(defaultConfig)), true, []string{`default.yaml: ok`}},
		{"empty", file("empty.yaml", ""), true, []string{`empty.yaml: ok`}},
		{"unknown keys", file("unknown.yaml", "version: 0.1\nhttp:\n  adr: :5000\n  debug:\n    prometheus:\n      enabld: true\n"+
			"storage:\n  ipfs:\n    nod: {}\n  filesystem: {}\ndisco:\n  noclon: true\n"), false, []string{
			`unknown.yaml: unknown key "http.adr" \(line 3\)`,
			`unknown.yaml: unknown key "http.debug.prometheus.enabld" \(line 6\)`,
			`unknown.yaml: unknown key "storage.ipfs.nod" \(line 9\)`,
			`unknown.yaml: unknown key "storage.filesystem" \(line 10\): Disco keeps the registry in IPFS`,
			`unknown.yaml: unknown key "disco.noclon" \(line 12\)`,
		}},
		{"values of the wrong kind", file("values.yaml", "disco:\n  noclone: maybe\n  clonetimeout: soon\n  clonemaxblob: big\n"+
			"ui:\n  enabled: 2\nstorage:\n  tag:\n    concurrencylimit: lots\n"), false, []string{
			`values.yaml: disco.noclone: "maybe" is not a bool \(line 2\)`,
			`values.yaml: disco.clonetimeout: "soon" is not a duration such as 30s \(line 3\)`,
			`values.yaml: disco.clonemaxblob: "big" is not a size such as 16GiB \(line 4\)`,
			`values.yaml: ui.enabled: "2" is not a bool \(line 6\)`,
			`values.yaml: storage.tag.concurrencylimit: "lots" is not a int \(line 9\)`,
		}},
		{"a redirect without a cache", file("cache.yaml", "storage:\n  ipfs:\n    redirect: https://cdn.example\n"), false, []string{
			`cache.yaml: storage.ipfs.redirect: needs a secondary cache \(storage.ipfs.cache\)`,
		}},
		{"a value Disco cannot use", file("formatter.yaml", "log:\n  formatter: xml\n"), false, []string{
			`formatter.yaml: log.formatter: unknown formatter "xml"`,
		}},
		{"not YAML", file("broken.yaml", "http: [\n"), false, []string{`broken.yaml: yaml: line 1: did not find expected node content`}},
		{"a file Distribution refuses", file("version.yaml", "version: 0.2\n"), false, []string{`version.yaml: unsupported version: "0.2"`}},
		{"a missing file", filepath.Join(dir, "missing.yaml"), false, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runDisco(t, map[string]string{"HOME": dir}, "config", "check", tt.file)
			if tt.ok != (err == nil) {
				t.Errorf("disco config check %s: %v, want ok %v; printed\n%s", tt.file, err, tt.ok, out)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if out == "" {
				lines = nil
			}
			if len(lines) != len(tt.want) {
				t.Fatalf("disco config check %s printed %d lines, want %d:\n%s", tt.file, len(lines), len(tt.want), out)
			}
			for i, re := range tt.want {
				if !regexp.MustCompile(re).MatchString(lines[i]) {
					t.Errorf("line %d is\n  %s\nwant\n  %s", i+1, lines[i], re)
				}
			}
			if !tt.ok && err != nil && len(tt.want) > 0 && !strings.Contains(err.Error(), "Disco would not start") {
				t.Errorf("the error %q does not say Disco would not start", err)
			}
		})
	}
}

// TestConfigCheckDefaultFile checks the file config check reads without an argument.
func TestConfigCheckDefaultFile(t *testing.T) {
	home := t.TempDir()
	vars := map[string]string{"HOME": home}
	out, err := runDisco(t, vars, "config", "check")
	if err != nil || !strings.Contains(out, "built-in defaults") {
		t.Errorf("no file: %q, %v; want ok, on the built-in defaults", out, err)
	}
	vars["REGISTRY_CONFIGURATION_PATH"] = filepath.Join(home, "missing.yaml")
	if _, err := runDisco(t, vars, "config", "check"); err == nil {
		t.Error("a missing $REGISTRY_CONFIGURATION_PATH passed: Disco refuses to start on it")
	}
	os.WriteFile(vars["REGISTRY_CONFIGURATION_PATH"], []byte("disco:\n  noclone: true\n"), 0o644)
	if out, err := runDisco(t, vars, "config", "check"); err != nil || !strings.HasSuffix(out, "missing.yaml: ok\n") {
		t.Errorf("$REGISTRY_CONFIGURATION_PATH: %q, %v; want it checked", out, err)
	}
}
