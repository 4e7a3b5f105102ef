package embedded

import (
	"fmt"
	"log/slog"

	"github.com/ipfs/boxo/autoconf"
	"github.com/ipfs/kubo/config"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Options configure the embedded node. They come from storage.ipfs.node in Disco's config.
type Options struct {
	// Path is the Kubo repository; it is created on first start.
	Path string
	// Swarm lists the multiaddrs the node listens on.
	Swarm []string
	// Peers lists full multiaddrs (with /p2p/<id>) of nodes to stay connected to.
	Peers []string
	// Public joins the public IPFS network: bootstrap peers, the DHT and providing. When
	// false the node dials nothing but Peers.
	Public bool
	// Routing is how the node finds content: "none" (the default) asks only the nodes it
	// is connected to; "dht" runs a DHT among the nodes it reaches from Peers, and
	// provides what it holds, so that a node finds what only a node it does not know
	// holds. Public implies "dht" over the public network.
	Routing string
	// SwarmKey, if set, is a key in the format of Kubo's swarm.key: the node talks only to
	// nodes with the same key, a private network.
	SwarmKey []byte
	// Log gets the node's own log lines; nil means slog.Default().
	Log *slog.Logger

	offline bool // no networking at all, for maintenance
}

// blockKeyCache is how many block keys the embedded node's blockstore caches.
const blockKeyCache = 8 << 10

// DefaultSwarm is where the embedded node listens unless configured otherwise.
var DefaultSwarm = []string{"/ip4/127.0.0.1/tcp/4001"}

// ParsePeers parses full peer multiaddrs, merging addresses of the same peer.
func ParsePeers(addrs []string) ([]peer.AddrInfo, error) {
	var mas []ma.Multiaddr
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("peer %q: %w", a, err)
		}
		mas = append(mas, m)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("peers: %w (each needs /p2p/<peer id>)", err)
	}
	return infos, nil
}

// applyOptions writes Disco's settings over a Kubo config. Disco owns the embedded node's
// networking: whatever the repository's config file says, these values win at every start.
func applyOptions(cfg *config.Config, o Options) error {
	peers, err := ParsePeers(o.Peers)
	if err != nil {
		return err
	}
	for _, a := range o.Swarm {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("swarm address %q: %w", a, err)
		}
	}
	if err := config.Profiles["unixfs-v1-2025"].Transform(cfg); err != nil {
		return err
	}

	// Check for a block before writing it: MFS and Disco's trees write many blocks that
	// exist already, and a check is cheaper than rewriting one.
	cfg.Datastore.WriteThrough = config.False
	// The blockstore remembers which blocks it has, in a cache of blockKeyCache keys.
	// Kubo's default, 65,536, is reached by a registry of a few thousand images and then
	// stays in memory, about 16 MiB of small objects that keep twice that of the heap
	// from going back to the system; the checks before a write hit the recent keys.
	cfg.Datastore.BlockKeyCacheSize = *config.NewOptionalInteger(blockKeyCache)
	// Blobs are made of 1 MiB blocks; Kubo's default lets one such block at a time be on
	// its way to a peer, which leaves the link idle between blocks.
	cfg.Internal.Bitswap = &config.InternalBitswap{
		MaxOutstandingBytesPerPeer: *config.NewOptionalInteger(64 << 20),
	}
	cfg.Addresses.Swarm = o.Swarm
	cfg.Addresses.API = nil
	cfg.Addresses.Gateway = nil
	cfg.Peering.Peers = peers
	cfg.Pubsub.Enabled = config.False
	cfg.Ipns.UsePubsub = config.False
	// Kubo's telemetry plugin reports to an outside server; Disco does not link it, and
	// says so in the config for anyone who opens this repository with a stock Kubo.
	cfg.Plugins.Plugins = map[string]config.Plugin{"telemetry": {
		Disabled: true,
		Config:   map[string]any{"Mode": "off"},
	}}

	if o.Routing != "" && o.Routing != "none" && o.Routing != "dht" {
		return fmt.Errorf("routing %q: want none or dht", o.Routing)
	}
	if o.Public {
		cfg.Bootstrap = autoconf.FallbackBootstrapPeers
		cfg.Routing.Type = config.NewOptionalString("dht")
		cfg.Provide.Enabled = config.True
		cfg.Discovery.MDNS.Enabled = false
		cfg.AutoConf.Enabled = config.False
		cfg.AutoTLS.Enabled = config.False
		return nil
	}
	// Private: dial nothing but the configured peers.
	cfg.Bootstrap = []string{}
	cfg.Routing.Type = config.NewOptionalString("none")
	cfg.Routing.DelegatedRouters = []string{}
	cfg.Ipns.DelegatedPublishers = []string{}
	cfg.DNS.Resolvers = map[string]string{}
	cfg.Discovery.MDNS.Enabled = false
	cfg.AutoConf.Enabled = config.False
	cfg.AutoTLS.Enabled = config.False
	cfg.AutoNAT.ServiceMode = config.AutoNATServiceDisabled
	cfg.Swarm.DisableNatPortMap = true
	cfg.Swarm.RelayClient.Enabled = config.False
	cfg.Swarm.RelayService.Enabled = config.False
	cfg.Swarm.EnableHolePunching = config.False
	cfg.Swarm.Transports.Network.Relay = config.False
	cfg.Provide.Enabled = config.False
	cfg.HTTPRetrieval.Enabled = config.False
	if len(o.SwarmKey) > 0 {
		// libp2p cannot share the TCP listener with websockets in a private network.
		cfg.Swarm.Transports.Network.Websocket = config.False
	}
	if o.Routing == "dht" {
		// A DHT of the nodes reached from Peers, on whatever addresses they have,
		// loopback ones included; every node a server of it.
		cfg.Bootstrap = o.Peers
		cfg.Routing.Type = config.NewOptionalString("dhtserver")
		cfg.Routing.LoopbackAddressesOnLanDHT = config.True
		cfg.Provide.Enabled = config.True
		// The sweeping provider waits to learn the size of the network before it
		// announces anything; among a few Discos, announce each new CID at once.
		cfg.Provide.DHT.SweepEnabled = config.False
	}
	return nil
}
