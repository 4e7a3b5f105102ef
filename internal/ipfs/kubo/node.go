// Package kubo is an IPFS node for Disco over the RPC API of a Kubo daemon that runs
// apart from Disco: Disco's MFS tree lives in the daemon's MFS, and content is imported
// with Disco's parameters, so that its CIDs are those the embedded node gives. Disco
// should be the only client that changes the daemon's MFS: Kubo v0.42.0 loses changes
// made at the same time, and a Node makes its own one at a time.
package kubo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/kubo/client/rpc"
	"github.com/ipfs/kubo/config"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Node is a Kubo daemon, reached through its RPC API. It implements ipfs.Node and
// ipfs.Holder, and is safe for concurrent use.
type Node struct {
	api        *rpc.HttpApi
	client     *http.Client
	timeout    time.Duration
	holdRoot   string
	flushAfter time.Duration
	gateway    string // the daemon's gateway, "" if it has none the node reaches

	// mu orders MFS calls: changes hold it exclusively, lookups shared until the daemon
	// starts to answer. Kubo's MFS loses changes made at the same time: a flushing files
	// cp (a hold's) flushes the parent of what it adds, which empties that directory's
	// cache of children, and a change under way in one of them then fails ("cannot flush
	// the created file ... file does not exist") and is lost. Nor has MFS an atomic
	// replace: files cp --force
	// unlinks first and refuses directories, and files mv moves into a directory in the
	// way. So Link removes what is in the way and links, and no lookup sees the gap.
	mu    sync.RWMutex
	batch batch // the changes not yet persisted
	// probed is the last probe of epoch, which the batch opened next may take.
	probed struct {
		at    time.Time
		dials int64
	}
	lost  error // changes found lost by a flush no Flush asked for, for the next Flush
	epoch *epoch

	health health
}

var (
	_ ipfs.Node   = (*Node)(nil)
	_ ipfs.Holder = (*Node)(nil)
)

// Option configures a Node.
type Option func(*Node)

// WithHTTPClient has the node talk to the daemon with c rather than with a client of its
// own, which keeps connections alive and uses no proxy.
func WithHTTPClient(c *http.Client) Option {
	return func(n *Node) { n.client = c }
}

// WithTimeout sets how long a call that the daemon answers from MFS or its blockstore
// waits for the answer to begin, whatever its context's deadline; DefaultTimeout unless
// set. Calls that may fetch from the network wait as long as their context lets them.
func WithTimeout(d time.Duration) Option {
	return func(n *Node) { n.timeout = d }
}

// WithHoldRoot sets the MFS directory that holds content for ipfs.Holder; DefaultHoldRoot
// unless set. It must be outside the tree Disco keeps in MFS.
func WithHoldRoot(dir string) Option {
	return func(n *Node) { n.holdRoot = path.Clean("/" + dir) }
}

// DefaultTimeout is the default of WithTimeout. A daemon's MFS can stop answering for
// good when a garbage collection runs under MFS changes (kubo#10842, fixed by kubo#11386
// after v0.42.0); this bounds what that does to callers without deadlines.
const DefaultTimeout = time.Minute

// DefaultHoldRoot is the default of WithHoldRoot.
const DefaultHoldRoot = "/disco-holds"

// New returns the node of the daemon whose RPC API is at addr, a URL
// ("http://127.0.0.1:5001") or a multiaddr ("/ip4/127.0.0.1/tcp/5001"). It checks that
// the daemon answers and that its import settings give Disco's CIDs.
func New(ctx context.Context, addr string, opts ...Option) (*Node, error) {
	n := &Node{timeout: DefaultTimeout, holdRoot: DefaultHoldRoot, flushAfter: DefaultFlushAfter}
	for _, o := range opts {
		o(n)
	}
	if n.client == nil {
		n.client = newClient()
	}
	// Bound the error bodies rpc reads whole, on a copy: the caller's client stays as it is.
	c := *n.client
	c.Transport = boundErrors{c.Transport}
	n.client = &c
	base, err := rpcBase(addr)
	if err != nil {
		return nil, fmt.Errorf("kubo RPC API %q: %w", addr, err)
	}
	api, err := rpc.NewURLApiWithClient(base, n.client)
	if err != nil {
		return nil, fmt.Errorf("kubo RPC API %q: %w", addr, err)
	}
	n.api, n.epoch = api, newEpoch(base)
	if _, err := n.Identity(ctx); err != nil {
		n.Close()
		return nil, err
	}
	cfg, err := n.config(ctx)
	if err == nil {
		err = checkImport(cfg.Import)
	}
	if err != nil {
		n.Close()
		return nil, err
	}
	u, _ := url.Parse(base) // rpcBase made it
	n.gateway = n.findGateway(ctx, cfg.Addresses.Gateway, u.Hostname())
	n.dropStale(ctx)
	return n, nil
}

// rpcBase returns the base URL ("http://host:port") of the RPC API at addr, a URL or a
// multiaddr.
func rpcBase(addr string) (string, error) {
	if strings.HasPrefix(addr, "/") {
		m, err := ma.NewMultiaddr(addr)
		if err != nil {
			return "", err
		}
		_, hostport, err := manet.DialArgs(m)
		if err != nil {
			return "", err
		}
		return "http://" + hostport, nil
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		return "", errors.New(`want "http://host:port" or a multiaddr`)
	}
	return u.Scheme + "://" + u.Host, nil
}

// newClient returns a client for one daemon: rpc.NewApi's turns keep-alives off, which
// costs a connection per call.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil, // the RPC API is the daemon's admin interface: never through a proxy
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// Close persists the changes not yet persisted, if the daemon does so within a few
// seconds, and closes the node's idle connections to the daemon; the daemon runs on.
func (n *Node) Close() error {
	n.mu.Lock()
	ctx, cancel := context.WithTimeout(context.Background(), min(n.timeout, closeTimeout))
	err := n.flush(ctx)
	cancel()
	n.mu.Unlock()
	n.client.CloseIdleConnections()
	n.epoch.close()
	return err
}

// Identity implements ipfs.Node.
func (n *Node) Identity(ctx context.Context) (ipfs.Identity, error) {
	var out struct {
		ID        string
		Addresses []string
	}
	if err := n.decode(ctx, n.api.Request("id"), "id", true, &out); err != nil {
		return ipfs.Identity{}, err
	}
	if out.Addresses == nil {
		out.Addresses = []string{}
	}
	return ipfs.Identity{ID: out.ID, Addresses: out.Addresses}, nil
}

// daemonConfig is what the node reads of the daemon's config.
type daemonConfig struct {
	Import    config.Import
	Addresses struct{ Gateway config.Strings }
}

func (n *Node) config(ctx context.Context) (daemonConfig, error) {
	var cfg daemonConfig
	err := n.decode(ctx, n.api.Request("config/show"), "config show", true, &cfg)
	return cfg, err
}

// checkImport fails unless the daemon's settings that add has no option for are Disco's:
// with others, large directories would get other CIDs than the embedded node gives them.
func checkImport(imp config.Import) error {
	threshold := imp.UnixFSHAMTDirectorySizeThreshold.WithDefault(config.DefaultUnixFSHAMTDirectorySizeThreshold)
	estimation := imp.UnixFSHAMTDirectorySizeEstimation.WithDefault(config.DefaultUnixFSHAMTDirectorySizeEstimation)
	var errs []error
	if threshold != ipfs.Import.HAMTThreshold {
		errs = append(errs, fmt.Errorf("its Import.UnixFSHAMTDirectorySizeThreshold is %d bytes, Disco needs %d", threshold, ipfs.Import.HAMTThreshold))
	}
	if estimation != ipfs.Import.HAMTEstimation {
		errs = append(errs, fmt.Errorf("its Import.UnixFSHAMTDirectorySizeEstimation is %q, Disco needs %q", estimation, ipfs.Import.HAMTEstimation))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kubo daemon's config: %w (ipfs config profile apply unixfs-v1-2025, then restart the daemon)", err)
	}
	return nil
}
