package config

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestDefaults(t *testing.T) {
	c, err := Parse(nil, env(map[string]string{"HOME": "/home/u"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Net != "tcp" || c.Addr != ":1970" {
		t.Errorf("listen = %s %s, want tcp :1970", c.Net, c.Addr)
	}
	if c.IPFS.Node.Path != "/home/u/.disco/ipfs" || c.IPFS.Uploads != "/home/u/.disco/uploads" {
		t.Errorf("paths = %s, %s", c.IPFS.Node.Path, c.IPFS.Uploads)
	}
	if c.IPFS.Node.Public || len(c.IPFS.Node.Swarm) != 1 || c.IPFS.Node.Swarm[0] != "/ip4/127.0.0.1/tcp/4001" {
		t.Errorf("node = %+v", c.IPFS.Node)
	}
	if c.Registry.Storage.Type() != "ipfs" {
		t.Errorf("storage type = %q", c.Registry.Storage.Type())
	}
}

// originalStyle uses the keys of the original Disco's example configuration, without the
// remote nodes and cache it documents as options.
const originalStyle = `
version: 0.1
log:
  level: debug
  fields:
    service: disco
    environment: development
storage:
  ipfs:
    node:
      path: /var/lib/disco/ipfs
      peers:
        - /ip4/127.0.0.1/tcp/4002/p2p/12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK
  maintenance:
    uploadpurging:
      enabled: false
  delete:
    enabled: true
disco:
  noclone: true
http:
  addr: 127.0.0.1:5000
  debug:
    addr: :5050
    prometheus:
      enabled: true
      path: /metrics
  headers:
    X-Content-Type-Options: [nosniff]
`

func TestOriginalStyle(t *testing.T) {
	// Distribution reads its REGISTRY_* overrides from the process environment.
	t.Setenv("REGISTRY_HTTP_SECRET", "s3cret")
	c, err := Parse([]byte(originalStyle), env(map[string]string{"DISCO_PORT": "2000"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:2000" {
		t.Errorf("Addr = %s: want the host of http.addr and the port of DISCO_PORT", c.Addr)
	}
	if !c.Disco.NoClone || c.IPFS.Node.Path != "/var/lib/disco/ipfs" || len(c.IPFS.Node.Peers) != 1 {
		t.Errorf("disco keys not read: %+v %+v", c.Disco, c.IPFS.Node)
	}
	if c.Registry.HTTP.Secret != "s3cret" {
		t.Errorf("REGISTRY_HTTP_SECRET not applied")
	}
	if !c.Registry.HTTP.Debug.Prometheus.Enabled || c.Registry.Log.Level != "debug" {
		t.Errorf("Distribution keys not read: %+v", c.Registry.HTTP.Debug)
	}
	if d := c.Registry.Storage["delete"]; d["enabled"] != true {
		t.Errorf("storage.delete = %v", d)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	for _, tt := range []struct{ yaml, env, want string }{
		{"http:\n  debug:\n    prometheus:\n      enabld: true\n", "", `"http.debug.prometheus.enabld"`},
		{"storage:\n  filesystem:\n    rootdirectory: /x\n", "", `"storage.filesystem"`},
		{"storage:\n  ipfs:\n    nod: {}\n", "", `"storage.ipfs.nod"`},
		{"storage:\n  delete:\n    enable: true\n", "", `"storage.delete.enable"`},
		{"disco:\n  noclon: true\n", "", `"disco.noclon"`},
		{"storage:\n  ipfs:\n    router:\n      nodes:\n        - {}\n", "", "storage.ipfs.router.nodes[0].url"},
		{"storage:\n  ipfs:\n    redirect: https://x\n", "", "storage.ipfs.redirect"},
		{"log:\n  formatter: xml\n", "", "log.formatter"},
		{"http:\n  addr: nonsense\n", "", "http.addr"},
		{"", "70000", "DISCO_PORT"},
		{"disco:\n  noclone: maybe\n", "", "disco.noclone"},
		{"ui:\n  enable: false\n", "", `"ui.enable"`},
		{"ui:\n  enabled: no-thanks\n", "", "ui.enabled"},
		{"storage:\n  tag:\n    concurrencylimit: lots\n", "", "storage.tag.concurrencylimit"},
		{"- a\n- b\n", "", "mapping"},
		{"proxy:\n  remoteurl: ftp://x\n", "", "proxy.remoteurl"},
		{"proxy:\n  remoteurl: https://x/v2/library\n", "", "proxy.remoteurl"},
		{"proxy:\n  remoteurl: https://x\n  username: u\n", "", "proxy.password"},
		{"proxy:\n  username: u\n  password: p\n", "", "proxy.remoteurl"},
		{"proxy:\n  remoteurl: https://x\n  exec: {command: helper}\n", "", "proxy.exec"},
		{"proxy:\n  remoteurl: https://x\n  ttl: forever\n", "", "proxy.ttl"},
		{"disco:\n  upstreamtimeout: -1s\n", "", "disco.upstreamtimeout"},
		{"disco:\n  peertimeout: later\n", "", "disco.peertimeout"},
	} {
		_, err := Parse([]byte(tt.yaml), env(map[string]string{"DISCO_PORT": tt.env}))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want an error naming %s", tt.yaml, err, tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	home := t.TempDir()
	c, err := Load(env(map[string]string{"HOME": home}))
	if err != nil || c.File != "" {
		t.Fatalf("no file: %v, %q; want the defaults", err, c.File)
	}
	if _, err := Load(env(map[string]string{"HOME": home, "REGISTRY_CONFIGURATION_PATH": home + "/missing.yaml"})); err == nil {
		t.Error("a missing file named by REGISTRY_CONFIGURATION_PATH was not an error")
	}
	p := filepath.Join(home, ".disco", "config.yaml")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("disco:\n  noclone: true\nstorage:\n  ipfs:\n    node:\n      path: ~/n\n"), 0o644)
	c, err = Load(env(map[string]string{"HOME": home}))
	if err != nil || c.File != p || !c.Disco.NoClone {
		t.Errorf("Load = %+v, %v; want %s read", c, err, p)
	}
	if c.IPFS.Node.Path != filepath.Join(home, "n") {
		t.Errorf("~/n gave %s", c.IPFS.Node.Path)
	}
}

// FuzzParse: Parse never panics, and a configuration it accepts is one Disco can start
// with: Distribution's part is there with the ipfs driver, it listens on $DISCO_PORT,
// paths are set, and no limit is negative. Parsing is deterministic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(originalStyle))
	f.Add([]byte("storage: ipfs\n"))
	f.Add([]byte("version: 0.1\nstorage:\n  ipfs:\n    node:\n      swarm: [a]\n"))
	f.Add([]byte("disco: {clonetimeout: 5s, bodytimeout: 1m, maxuploads: 3, clonemaxblob: 1GiB}\nhttp: {addr: \"127.0.0.1:5000\"}\n"))
	f.Add([]byte("http: {net: unix, addr: /run/disco.sock}\nlog: {formatter: json}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, env(map[string]string{"HOME": "/home/u", "DISCO_PORT": "1971"}))
		if err != nil {
			if err.Error() == "" {
				t.Errorf("Parse(%q) fails with an empty message", data)
			}
			return
		}
		if c.Registry == nil || c.Registry.Storage.Type() != "ipfs" {
			t.Fatalf("Parse(%q) gave a config without the ipfs storage", data)
		}
		if c.Net == "tcp" {
			if _, port, err := net.SplitHostPort(c.Addr); err != nil || port != "1971" {
				t.Errorf("Parse(%q) listens on %q, want port 1971 ($DISCO_PORT)", data, c.Addr)
			}
		} else if c.Addr == "" {
			t.Errorf("Parse(%q) listens on %s without an address", data, c.Net)
		}
		if c.IPFS.Node.Path == "" || c.IPFS.Uploads == "" {
			t.Errorf("Parse(%q) gave no node path (%q) or uploads (%q)", data, c.IPFS.Node.Path, c.IPFS.Uploads)
		}
		if d := c.Disco; d.CloneTimeout < 0 || d.BodyTimeout < 0 || d.MaxUploads < 0 || d.CloneMaxBlob < 0 || d.CloneMaxSize < 0 {
			t.Errorf("Parse(%q) gave negative limits: %+v", data, d)
		}
		again, err := Parse(data, env(map[string]string{"HOME": "/home/u", "DISCO_PORT": "1971"}))
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Errorf("Parse(%q) twice gives %+v, then %+v, %v", data, c, again, err)
		}
	})
}

func TestDiscoSection(t *testing.T) {
	c, err := Parse([]byte("disco:\n  clonetimeout: 5s\n  hashesonly: true\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Disco.CloneTimeout.Seconds() != 5 || !c.Disco.HashesOnly {
		t.Errorf("disco = %+v", c.Disco)
	}
	if _, err := Parse([]byte("disco:\n  clonetimeout: soon\n"), env(nil)); err == nil || !strings.Contains(err.Error(), "disco.clonetimeout") {
		t.Errorf("a bad duration gave %v", err)
	}
	if c, err := Parse([]byte("disco:\n  catalog: {pushedonly: true}\n"), env(nil)); err != nil || !c.Disco.Catalog.PushedOnly {
		t.Errorf("disco.catalog.pushedonly: %+v, %v", c.Disco, err)
	}
	if _, err := Parse([]byte("disco:\n  catalog: {pushedonly: true}\n  hashesonly: true\n"), env(nil)); err == nil || !strings.Contains(err.Error(), "disco.catalog.pushedonly") {
		t.Errorf("pushedonly with hashesonly gave %v", err)
	}
}

func TestProxySection(t *testing.T) {
	c, err := Parse([]byte("proxy:\n  remoteurl: https://registry-1.docker.io\n  username: u\n  password: p\n  ttl: 24h\n"+
		"disco:\n  upstreamtimeout: 5s\n  peertimeout: 1s\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Registry.Proxy
	if p.RemoteURL != "https://registry-1.docker.io" || p.Username != "u" || p.Password != "p" || p.TTL == nil || p.TTL.Hours() != 24 {
		t.Errorf("proxy = %+v", p)
	}
	if c.Disco.UpstreamTimeout.Seconds() != 5 || c.Disco.PeerTimeout.Seconds() != 1 {
		t.Errorf("disco = %+v", c.Disco)
	}
	for _, ok := range []string{"http://127.0.0.1:5000", "https://registry.example.com/"} {
		if _, err := Parse([]byte("proxy:\n  remoteurl: "+ok+"\n"), env(nil)); err != nil {
			t.Errorf("proxy.remoteurl %s: %v", ok, err)
		}
	}
}

// TestProxyURLCredentials: credentials in proxy.remoteurl are refused, and the message
// that says so, which goes to the terminal and the logs, does not repeat them.
func TestProxyURLCredentials(t *testing.T) {
	for _, remote := range []string{
		"https://puller:pw-Zq81x@registry.example.com",
		"https://puller:pw-Zq81x@registry.example.com/v2/library", // not a base URL either
		"https://puller:pw%Zq81x@registry.example.com",            // not a URL
		"https://puller:pw Zq81x@registry.example.com",
		"https://puller:pw-Zq81x@registry example.com",
	} {
		_, err := Parse([]byte("proxy:\n  remoteurl: "+remote+"\n"), env(nil))
		if err == nil || !strings.Contains(err.Error(), "proxy.remoteurl") {
			t.Errorf("proxy.remoteurl %s: %v, want an error naming proxy.remoteurl", remote, err)
			continue
		}
		if strings.Contains(err.Error(), "Zq") {
			t.Errorf("proxy.remoteurl %s: the error repeats the password: %v", remote, err)
		}
	}
}

func TestUISection(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want bool
	}{
		{"", true},
		{"ui: {}\n", true},
		{"ui:\n  enabled: true\n", true},
		{"ui:\n  enabled: false\n", false},
	} {
		c, err := Parse([]byte(tt.yaml), env(nil))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.yaml, err)
		}
		if c.UI.Enabled != tt.want {
			t.Errorf("Parse(%q): ui.enabled %v, want %v", tt.yaml, c.UI.Enabled, tt.want)
		}
	}
}

func TestEveryProblemNamed(t *testing.T) {
	_, err := Parse([]byte("http:\n  adr: x\n  debug:\n    prometheus:\n      enabld: true\nstorage:\n  s3: {}\ndisco:\n  noclone: maybe\n"), env(nil))
	var got []string
	for _, e := range Errors(err) {
		got = append(got, e.Error())
	}
	want := []string{`"http.adr" (line 2)`, `"http.debug.prometheus.enabld" (line 5)`, `"storage.s3" (line 7)`, `disco.noclone: "maybe" is not a bool (line 9)`}
	if len(got) != len(want) {
		t.Fatalf("Parse gave %d problems, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("problem %d is %q, want it to name %s", i, got[i], want[i])
		}
	}
}

func TestNotes(t *testing.T) {
	c, err := Parse([]byte("log:\n  hooks: []\nstorage:\n  redirect:\n    disable: true\nhttp:\n  addr: 127.0.0.1:5000\n"+
		"proxy:\n  remoteurl: https://x\n  cachewritetimeout: 1m\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http.addr (line 7)", "log.hooks (line 2)", "proxy.cachewritetimeout (line 10)", "storage.redirect (line 4)"}
	if len(c.Notes) != len(want) {
		t.Fatalf("notes %v, want %d", c.Notes, len(want))
	}
	for i, n := range c.Notes {
		if !strings.HasPrefix(n.String(), want[i]) {
			t.Errorf("note %d is %q, want %s", i, n, want[i])
		}
	}
	c, err = Parse([]byte("http:\n  addr: /run/disco.sock\n  net: unix\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Notes) > 0 {
		t.Errorf("a unix socket path in http.addr got notes %v", c.Notes)
	}
}
