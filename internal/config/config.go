// Package config reads Disco's configuration: Distribution's YAML with Disco's keys added,
// in the layout the original Disco used. It is read once at start-up; every error names
// the key at fault.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/dustin/go-humanize"
	yaml "go.yaml.in/yaml/v3"
)

// DefaultPort is the registry's port unless $DISCO_PORT says otherwise.
const DefaultPort = 1970

// Config is Disco's configuration.
type Config struct {
	// File is the file the configuration came from; empty for the built-in defaults.
	File string
	// Registry is Distribution's part of the configuration.
	Registry *configuration.Configuration
	// Net and Addr are where the registry listens ("tcp", ":1970").
	Net, Addr string
	// IPFS is storage.ipfs.
	IPFS IPFS
	// Disco is the disco section.
	Disco Disco
	// UI is the ui section.
	UI UI
	// Notes are about keys the file sets that Disco does not use as written.
	Notes []Note
}

// IPFS is the storage.ipfs section.
type IPFS struct {
	// Node configures the embedded IPFS node.
	Node Node `yaml:"node"`
	// Router lists Kubo daemons to keep the registry in, by the URL of their RPC API (the
	// original Disco's storage.ipfs.router); with none, the embedded node is used.
	Router struct {
		Nodes []struct {
			URL string `yaml:"url"`
		} `yaml:"nodes"`
	} `yaml:"router"`
	// Cache, CacheOnly and Redirect are the original Disco's secondary cache.
	Cache     map[string]any `yaml:"cache"`
	CacheOnly bool           `yaml:"cacheonly"`
	Redirect  string         `yaml:"redirect"`
	// RootDirectory is the MFS directory the registry's files are kept under.
	RootDirectory string `yaml:"rootdirectory"`
	// Uploads is the local directory for uploads in progress.
	Uploads string `yaml:"uploads"`
}

// Node is storage.ipfs.node.
type Node struct {
	Path   string   `yaml:"path"`
	Swarm  []string `yaml:"swarm"`
	Peers  []string `yaml:"peers"`
	Public bool     `yaml:"public"`
	// Routing is none (dial only peers) or dht (a DHT among the nodes reached from peers).
	Routing string `yaml:"routing"`
	// SwarmKey names a file in the format of Kubo's swarm.key: a private network.
	SwarmKey string `yaml:"swarmkey"`
}

// Disco is the disco section.
type Disco struct {
	// NoClone serves only what is already in the local node: no pulls by CID from the
	// network.
	NoClone bool `yaml:"noclone"`
	// CloneTimeout bounds the wait for the network to answer for a CID (default 30s).
	CloneTimeout time.Duration `yaml:"clonetimeout"`
	// HashesOnly removes a pushed name once the image is filed under its digest and CID,
	// as the original Disco did.
	HashesOnly bool `yaml:"hashesonly"`
	// Catalog says what /v2/_catalog lists.
	Catalog struct {
		// PushedOnly leaves out the digest and CID names Disco gives an image pushed
		// here: the catalog lists the names pushed, and the CID names of images cloned
		// from the network. By default it lists every repository, three for each image
		// pushed with a tag, as the original Disco did.
		PushedOnly bool `yaml:"pushedonly"`
	} `yaml:"catalog"`
	// CloneMaxBlob and CloneMaxSize bound a blob of an image pulled by CID from the
	// network, and the whole image (default 16 GiB and 64 GiB).
	CloneMaxBlob Bytes `yaml:"clonemaxblob"`
	CloneMaxSize Bytes `yaml:"clonemaxsize"`
	// MaxUploads bounds the blob upload requests served at once (default 64); more are
	// answered 429 TOOMANYREQUESTS.
	MaxUploads int `yaml:"maxuploads"`
	// BodyTimeout is how long a request body may send nothing before the request is cut
	// off (default 1m).
	BodyTimeout time.Duration `yaml:"bodytimeout"`
	// UpstreamTimeout bounds, for a mirror (proxy.remoteurl), how long the upstream may
	// take to answer a request, or go silent while it sends a blob (default 15s).
	UpstreamTimeout time.Duration `yaml:"upstreamtimeout"`
	// PeerTimeout bounds how long a mirror waits for its peers to say whether they hold
	// content, or for the peer fetching it to report progress (default 3s).
	PeerTimeout time.Duration `yaml:"peertimeout"`
}

// Bytes is a size in bytes, written as a number of bytes or with a unit: 512MiB, 16GiB.
type Bytes int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseBytes(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

func parseBytes(s string) (Bytes, error) {
	v, err := humanize.ParseBytes(s)
	if err != nil || v > math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a size such as 16GiB", s)
	}
	return Bytes(v), nil
}

// UI is the ui section: the web page on the registry port.
type UI struct {
	// Enabled serves the page (default true).
	Enabled bool `yaml:"enabled"`
}

// Path returns the file to read: $REGISTRY_CONFIGURATION_PATH, else ~/.disco/config.yaml.
// explicit reports whether the environment named it.
func Path(getenv func(string) string) (path string, explicit bool) {
	if p := getenv("REGISTRY_CONFIGURATION_PATH"); p != "" {
		return p, true
	}
	return filepath.Join(getenv("HOME"), ".disco", "config.yaml"), false
}

// Load reads the configuration file, or returns the built-in defaults when there is none.
// A file named by $REGISTRY_CONFIGURATION_PATH must exist.
func Load(getenv func(string) string) (*Config, error) {
	path, explicit := Path(getenv)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return Parse(nil, getenv)
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data, getenv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.File = path
	return c, nil
}

// Parse parses a configuration file's contents; empty data gives the defaults. Environment
// variables override Distribution's keys as in Distribution (REGISTRY_HTTP_SECRET, ...).
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, withTabHint(data, err)
	}
	if err := checkKeys(&root, reflect.TypeFor[file](), ""); err != nil {
		return nil, err
	}
	doc, err := withDefaults(&root)
	if err != nil {
		return nil, err
	}
	var ours struct {
		Storage struct {
			IPFS IPFS `yaml:"ipfs"`
		} `yaml:"storage"`
		Disco Disco `yaml:"disco"`
		UI    UI    `yaml:"ui"`
	}
	ours.UI.Enabled = true
	if err := doc.Decode(&ours); err != nil {
		return nil, err
	}
	normalized, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	reg, err := parseRegistry(normalized)
	if err != nil {
		return nil, err
	}
	c := &Config{Registry: reg, IPFS: ours.Storage.IPFS, Disco: ours.Disco, UI: ours.UI}
	if err := c.resolve(getenv); err != nil {
		return nil, err
	}
	c.Notes = notes(doc, c)
	return c, nil
}

// withDefaults returns the document's top mapping with version and storage.ipfs present.
func withDefaults(root *yaml.Node) (*yaml.Node, error) {
	if root.Kind == 0 { // empty file
		root.Kind = yaml.DocumentNode
		root.Content = []*yaml.Node{{Kind: yaml.MappingNode}}
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, errors.New("want a YAML mapping at the top")
	}
	if child(doc, "version") == nil {
		add(doc, "version", &yaml.Node{Kind: yaml.ScalarNode, Value: "0.1"})
	}
	storage := child(doc, "storage")
	if storage == nil {
		storage = add(doc, "storage", &yaml.Node{Kind: yaml.MappingNode})
	}
	if storage.Kind == yaml.ScalarNode && storage.Value == "ipfs" {
		*storage = yaml.Node{Kind: yaml.MappingNode}
	}
	if child(storage, "ipfs") == nil {
		add(storage, "ipfs", &yaml.Node{Kind: yaml.MappingNode})
	}
	return doc, nil
}

func child(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func add(m *yaml.Node, key string, v *yaml.Node) *yaml.Node {
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
	return v
}

// resolve fills in defaults that depend on the environment and checks values.
func (c *Config) resolve(getenv func(string) string) error {
	home := getenv("HOME")
	if c.IPFS.Node.Path == "" {
		c.IPFS.Node.Path = filepath.Join(home, ".disco", "ipfs")
	}
	if c.IPFS.Uploads == "" {
		c.IPFS.Uploads = filepath.Join(home, ".disco", "uploads")
	}
	c.IPFS.Node.Path = expandHome(c.IPFS.Node.Path, home)
	if c.IPFS.Node.SwarmKey != "" {
		c.IPFS.Node.SwarmKey = expandHome(c.IPFS.Node.SwarmKey, home)
	}
	switch c.IPFS.Node.Routing {
	case "", "none", "dht":
	default:
		return fmt.Errorf("storage.ipfs.node.routing: %q: want none or dht", c.IPFS.Node.Routing)
	}
	c.IPFS.Uploads = expandHome(c.IPFS.Uploads, home)
	if c.IPFS.Node.Swarm == nil {
		c.IPFS.Node.Swarm = []string{"/ip4/127.0.0.1/tcp/4001"}
	}
	for i, n := range c.IPFS.Router.Nodes {
		if n.URL == "" {
			return fmt.Errorf("storage.ipfs.router.nodes[%d].url: the RPC API of a Kubo daemon is needed, such as http://127.0.0.1:5001", i)
		}
	}
	seen := map[string]bool{}
	for i, n := range c.IPFS.Router.Nodes {
		if seen[n.URL] {
			return fmt.Errorf("storage.ipfs.router.nodes[%d].url: %s is named twice", i, n.URL)
		}
		seen[n.URL] = true
	}
	if err := c.checkCache(); err != nil {
		return err
	}
	if err := c.checkProxy(); err != nil {
		return err
	}
	for key, d := range map[string]time.Duration{
		"disco.clonetimeout": c.Disco.CloneTimeout, "disco.bodytimeout": c.Disco.BodyTimeout,
		"disco.upstreamtimeout": c.Disco.UpstreamTimeout, "disco.peertimeout": c.Disco.PeerTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("%s: must not be negative", key)
		}
	}
	if c.Disco.MaxUploads < 0 {
		return errors.New("disco.maxuploads: must not be negative")
	}
	if c.Disco.Catalog.PushedOnly && c.Disco.HashesOnly {
		// No pushed name stays: the catalog would list only cloned images.
		return errors.New("disco.catalog.pushedonly: cannot be used with disco.hashesonly")
	}
	// OCI manifests may list non-distributable layers, which clients fetch from their URLs;
	// Distribution refuses every URL unless told which to allow.
	if urls := &c.Registry.Validation.Manifests.URLs; len(urls.Allow) == 0 && len(urls.Deny) == 0 {
		urls.Allow = []string{"^https?://"}
	}
	switch f := c.Registry.Log.Formatter; f {
	case "", "text", "json", "logstash":
	default:
		return fmt.Errorf("log.formatter: unknown formatter %q (want text, json or logstash)", f)
	}
	return c.listen(getenv("DISCO_PORT"))
}

// checkCache checks the secondary cache's keys: one storage driver under
// storage.ipfs.cache, which cacheonly and redirect need.
func (c *Config) checkCache() error {
	if len(c.IPFS.Cache) > 1 {
		return errors.New("storage.ipfs.cache: name one storage driver")
	}
	for name, params := range c.IPFS.Cache {
		if _, ok := params.(map[string]any); !ok && params != nil {
			return fmt.Errorf("storage.ipfs.cache.%s: want the driver's parameters, as a mapping", name)
		}
		if name == driverName {
			return fmt.Errorf("storage.ipfs.cache.%s: the cache is another storage than IPFS", name)
		}
	}
	if c.IPFS.Cache == nil {
		for key, set := range map[string]bool{"storage.ipfs.cacheonly": c.IPFS.CacheOnly, "storage.ipfs.redirect": c.IPFS.Redirect != ""} {
			if set {
				return fmt.Errorf("%s: needs a secondary cache (storage.ipfs.cache)", key)
			}
		}
	}
	if c.IPFS.CacheOnly {
		if len(c.IPFS.Router.Nodes) > 0 {
			return errors.New("storage.ipfs.cacheonly: with no IPFS node, storage.ipfs.router.nodes cannot be set")
		}
		c.Disco.NoClone = true // nothing can come from IPFS
	}
	return nil
}

// checkProxy checks Distribution's proxy section, which makes Disco a mirror of the
// registry at proxy.remoteurl.
func (c *Config) checkProxy() error {
	p := c.Registry.Proxy
	if p.RemoteURL == "" {
		for key, set := range map[string]bool{
			"proxy.username": p.Username != "", "proxy.password": p.Password != "",
			"proxy.ttl": p.TTL != nil, "proxy.exec": p.Exec != nil,
		} {
			if set {
				return fmt.Errorf("%s: needs proxy.remoteurl, the registry to mirror", key)
			}
		}
		return nil
	}
	u, err := url.Parse(p.RemoteURL)
	if err != nil {
		// Never the URL, nor what url.Parse says of it, which quotes it or parts of it:
		// user info in it holds a password.
		if strings.Contains(p.RemoteURL, "@") {
			return errors.New("proxy.remoteurl: not a URL; credentials go in proxy.username and proxy.password, not in the URL")
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("proxy.remoteurl: not a URL: %w", err)
	}
	if u.User != nil {
		// Never repeated, in a message or elsewhere: the credentials would go with it.
		return fmt.Errorf("proxy.remoteurl: %s://%s has credentials in it; set proxy.username and proxy.password instead", u.Scheme, u.Host)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return fmt.Errorf("proxy.remoteurl: %q is not the base URL of a registry, such as https://registry-1.docker.io", p.RemoteURL)
	}
	if p.Exec != nil {
		return errors.New("proxy.exec: credential helpers are not supported; set proxy.username and proxy.password")
	}
	if (p.Username == "") != (p.Password == "") {
		return errors.New("proxy.username and proxy.password: set both, or neither")
	}
	return nil
}

// driverName is the registry's own storage driver.
const driverName = "ipfs"

// listen works out where the registry listens. The port is $DISCO_PORT or 1970, as in the
// original Disco, whose http.addr named an internal server; a host in http.addr is kept.
func (c *Config) listen(port string) error {
	c.Net = c.Registry.HTTP.Net
	if c.Net == "" {
		c.Net = "tcp"
	}
	if c.Net == "unix" {
		if c.Registry.HTTP.Addr == "" {
			return errors.New("http.addr: a unix socket path is needed with http.net: unix")
		}
		c.Addr = c.Registry.HTTP.Addr
		return nil
	}
	if port == "" {
		port = strconv.Itoa(DefaultPort)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("DISCO_PORT: %q is not a port number", port)
	}
	var host string
	if a := c.Registry.HTTP.Addr; a != "" {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("http.addr: %w", err)
		}
		host = h
	}
	c.Addr = net.JoinHostPort(host, port)
	return nil
}

// expandHome replaces a leading ~/ with the home directory.
func expandHome(p, home string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return p
}
