// Package embedded runs a Kubo node inside the Disco process: Disco's default IPFS node.
// Its networking is private unless Options.Public is set; see Options.
package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/ipfs/kubo/config"
	serialize "github.com/ipfs/kubo/config/serialize"
	"github.com/ipfs/kubo/core"
	"github.com/ipfs/kubo/core/coreapi"
	coreiface "github.com/ipfs/kubo/core/coreiface"
	"github.com/ipfs/kubo/core/coreiface/options"
	"github.com/ipfs/kubo/core/node/libp2p"
	"github.com/ipfs/kubo/plugin"
	"github.com/ipfs/kubo/plugin/plugins/flatfs"
	"github.com/ipfs/kubo/plugin/plugins/levelds"
	"github.com/ipfs/kubo/plugin/plugins/pebbleds"
	"github.com/ipfs/kubo/repo"
	"github.com/ipfs/kubo/repo/fsrepo"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/pnet"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Node is a Kubo node running in this process. It implements ipfs.Node.
type Node struct {
	ipfs  *core.IpfsNode
	api   coreiface.CoreAPI
	tree  *tree           // the MFS tree; Kubo's own mfs.Root is never changed
	local ipld.DAGService // the blockstore alone, without the network
	path  string          // of the repository

	log *slog.Logger

	// mu guards the tree, which lookups change too (they load directories), and the
	// journal. Holding it for each change, readers never see a path between the removal
	// and the addition of its replacement, and the journal records changes in the order
	// they were made. What the tree leads to (a file's blocks) is read without it, and a
	// checkpoint holds it only while it writes the tree and while it cuts the journal.
	mu            sync.Mutex
	checkpointing sync.Mutex // one checkpoint at a time; taken before mu
	journal       *journal
	disk          *syncer   // syncs the repository's file system when a change is acknowledged
	changes       uint64    // MFS changes made so far
	checkpointed  uint64    // value of changes at the last checkpoint
	used          time.Time // when the tree was last used
	idled         bool      // whether the tree was let go of since
	stop          context.CancelFunc
	stopped       chan struct{}

	// fetching records the leaves that fetches are getting from the network.
	fetching fetching
	redialer redialer

	// added holds the small files added last, which are most often linked next: Link
	// finds them here rather than reading them back from the blockstore.
	added *lru.Cache[cid.Cid, ipld.Node]
}

var (
	_ ipfs.Node = (*Node)(nil)
	_ ipfs.Host = (*Node)(nil)
)

// Open starts the node, creating its repository on first use.
func Open(ctx context.Context, o Options) (*Node, error) {
	if err := Init(o.Path); err != nil {
		return nil, err
	}
	if err := writeSwarmKey(o.Path, o.SwarmKey); err != nil {
		return nil, err
	}
	r, err := fsrepo.Open(o.Path)
	if err != nil {
		return nil, fmt.Errorf("open ipfs repo %s: %w", o.Path, err)
	}
	n, err := start(ctx, r, o)
	if err != nil {
		r.Close()
		return nil, err
	}
	if n.disk, err = newSyncer(o.Path); err != nil {
		n.ipfs.Close()
		return nil, err
	}
	if err := n.recover(ctx, filepath.Join(o.Path, journalFile)); err != nil {
		n.ipfs.Close()
		n.disk.Close()
		return nil, err
	}
	return n, nil
}

// journalFile is the name of the MFS journal in the node's repository.
const journalFile = "disco-mfs-journal"

// recover applies what the journal at name recorded after the last checkpoint, records
// the result, and starts checkpointing. On a full disk it starts without recording: the
// checkpoints that follow record it once there is room.
func (n *Node) recover(ctx context.Context, name string) error {
	j, recs, err := openJournal(name)
	if err != nil {
		return err
	}
	n.journal = j
	if len(recs) > 0 {
		n.log.Info("mfs journal: applying changes made after the last checkpoint", "records", len(recs), "journal", name)
		n.replay(ctx, recs)
	}
	err = n.checkpointNow(ctx)
	switch {
	case err == nil:
		err = j.reset() // also what a crash cut short, if nothing else was there
	case errors.Is(err, syscall.ENOSPC):
		// Serve what is stored: the journal keeps its records until a checkpoint has
		// room, and the records added from now on follow the whole ones.
		n.log.Warn("mfs checkpoint: the disk is full; changes stay in the journal until space is freed", "err", err)
		err = j.cut()
	}
	if err != nil {
		j.Close()
		return err
	}
	ctx, n.stop = context.WithCancel(context.WithoutCancel(ctx))
	n.stopped = make(chan struct{})
	go func() {
		defer close(n.stopped)
		n.checkpoints(ctx)
	}()
	return nil
}

func start(ctx context.Context, r repo.Repo, o Options) (*Node, error) {
	cfg, err := r.Config()
	if err != nil {
		return nil, fmt.Errorf("read ipfs config: %w", err)
	}
	if err := applyOptions(cfg, o); err != nil {
		return nil, err
	}
	if err := r.SetConfig(cfg); err != nil {
		return nil, fmt.Errorf("write ipfs config: %w", err)
	}
	routing := libp2p.NilRouterOption
	switch {
	case o.Public:
		routing = libp2p.DHTOption
	case o.Routing == "dht":
		routing = libp2p.DHTServerOption
	}
	// The lifetime context of a Kubo node stops it when cancelled; Close does that here.
	unixfsGlobals.Lock()
	nd, err := core.NewNode(context.WithoutCancel(ctx), &core.BuildCfg{
		Online:    !o.offline,
		Permanent: true,
		Repo:      r,
		Routing:   routing,
		ExtraOpts: map[string]bool{"pubsub": false, "ipnsps": false},
	})
	unixfsGlobals.Unlock()
	if err != nil {
		return nil, fmt.Errorf("start ipfs node: %w", err)
	}
	api, err := coreapi.NewCoreAPI(nd)
	if err != nil {
		nd.Close()
		return nil, fmt.Errorf("ipfs api: %w", err)
	}
	// Kubo's peering service first dials its peers after a delay of several seconds, to
	// stagger reconnections; a Disco that has just started should not wait that long.
	for _, p := range cfg.Peering.Peers {
		if o.offline {
			break
		}
		go func() {
			ctx, cancel := context.WithTimeout(nd.Context(), 30*time.Second)
			defer cancel()
			nd.PeerHost.Connect(ctx, p) // on failure, peering tries again
		}()
	}
	added, err := lru.New[cid.Cid, ipld.Node](1024)
	if err != nil {
		nd.Close()
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	local := merkledag.NewDAGService(blockservice.New(nd.Blockstore, offline.Exchange(nd.Blockstore)))
	// The tree starts from the root Kubo loaded and records its own. Kubo's mfs.Root is
	// closed now, publishing what it loaded, so that it publishes nothing more: when the
	// node closes, it would record the root it holds over the tree's.
	root, err := nd.FilesRoot.GetDirectory().GetNode()
	if err == nil {
		err = nd.FilesRoot.Close()
	}
	if err != nil {
		nd.Close()
		return nil, fmt.Errorf("mfs root: %w", err)
	}
	t, err := newTree(local, nd.Blockstore.GetSize, root)
	if err != nil {
		nd.Close()
		return nil, err
	}
	n := &Node{ipfs: nd, api: api, tree: t, local: local, path: o.Path, added: added, log: log}
	if !o.offline {
		n.redialer.peers = cfg.Peering.Peers
	}
	return n, nil
}

// unixfsGlobals guards boxo's unixfs package variables, which Kubo sets at every node
// start (to the same values, Disco's import parameters), against the directory work of
// the other nodes in the process: tests run several.
var unixfsGlobals sync.RWMutex

const closeTimeout = 30 * time.Second

// Close checkpoints MFS and stops the node, closing its repository.
func (n *Node) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	n.stop()
	<-n.stopped
	err := n.checkpointNow(ctx)
	if err == nil {
		err = n.journal.Close()
	}
	return errors.Join(err, n.ipfs.Close(), n.disk.Close())
}

// Init creates the Kubo repository at path with a new ed25519 identity, unless one exists.
func Init(path string) error {
	if err := registerDatastores(); err != nil {
		return err
	}
	if fsrepo.IsInitialized(path) {
		return nil
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create ipfs repo: %w", err)
	}
	id, err := config.CreateIdentity(io.Discard, []options.KeyGenerateOption{options.Key.Type(options.Ed25519Key)})
	if err != nil {
		return fmt.Errorf("create ipfs identity: %w", err)
	}
	cfg, err := config.InitWithIdentity(id)
	if err != nil {
		return err
	}
	// Written safe: nothing in the stored config dials out, whoever opens it.
	if err := applyOptions(cfg, Options{Swarm: DefaultSwarm}); err != nil {
		return err
	}
	if err := fsrepo.Init(path, cfg); err != nil {
		return fmt.Errorf("init ipfs repo %s: %w", path, err)
	}
	return nil
}

// ReadIdentity returns the identity of the repository at o.Path, creating the repository
// if need be, whether or not a node has it open. Addresses are those of o.Swarm.
func ReadIdentity(o Options) (ipfs.Identity, error) {
	if err := Init(o.Path); err != nil {
		return ipfs.Identity{}, err
	}
	cfg, err := serialize.Load(filepath.Join(o.Path, "config"))
	if err != nil {
		return ipfs.Identity{}, fmt.Errorf("read ipfs config: %w", err)
	}
	id := ipfs.Identity{ID: cfg.Identity.PeerID, Addresses: []string{}}
	for _, a := range o.Swarm {
		id.Addresses = append(id.Addresses, a+"/p2p/"+cfg.Identity.PeerID)
	}
	return id, nil
}

// Identity returns the running node's peer ID and listen addresses.
func (n *Node) Identity(ctx context.Context) (ipfs.Identity, error) {
	id := ipfs.Identity{ID: n.ipfs.Identity.String(), Addresses: []string{}}
	for _, a := range n.ipfs.PeerHost.Addrs() {
		id.Addresses = append(id.Addresses, a.String()+"/p2p/"+id.ID)
	}
	return id, nil
}

// Host returns the node's libp2p host, over which Disco speaks protocols of its own with
// its peers; nil for a node opened offline.
func (n *Node) Host() host.Host { return n.ipfs.PeerHost }

// registerDatastores makes Kubo's on-disk datastores known to fsrepo. Kubo's plugin loader
// would do it too, but would also start plugins Disco does not want, telemetry among them.
var registerDatastores = sync.OnceValue(func() error {
	for _, list := range [][]plugin.Plugin{flatfs.Plugins, levelds.Plugins, pebbleds.Plugins} {
		for _, p := range list {
			ds, ok := p.(plugin.PluginDatastore)
			if !ok {
				continue
			}
			if err := fsrepo.AddDatastoreConfigHandler(ds.DatastoreTypeName(), ds.DatastoreConfigParser()); err != nil {
				return err
			}
		}
	}
	return nil
})

// writeSwarmKey puts key where Kubo reads it, as the repository's swarm.key, or removes
// one a previous configuration left: Disco owns the node's networking.
func writeSwarmKey(repo string, key []byte) error {
	name := filepath.Join(repo, "swarm.key")
	if key == nil {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("swarm key: %w", err)
		}
		return nil
	}
	if _, err := pnet.DecodeV1PSK(bytes.NewReader(key)); err != nil {
		return fmt.Errorf("swarm key: %w", err)
	}
	if err := os.WriteFile(name, key, 0o600); err != nil {
		return fmt.Errorf("swarm key: %w", err)
	}
	return nil
}
