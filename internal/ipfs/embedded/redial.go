package embedded

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Kubo's peering service dials a configured peer that is not connected again after a
// delay that grows from 5 s to 10 min, and libp2p refuses to dial an address that just
// failed for 5 s or more: a peer that comes back (both Discos restarted at once, a
// network that healed) stays unused for that long, and a pull by CID of what only it
// holds waits or fails meanwhile. So whenever the node is about to ask the network, it
// dials the configured peers it is not connected to, at most once every redialEvery each,
// in the background: bitswap sends a peer that connects the wants already under way.

const (
	// redialEvery is how often a configured peer that is not connected is dialed at most.
	redialEvery = time.Second
	// redialTimeout bounds one dial.
	redialTimeout = 5 * time.Second
)

// redialer dials again the configured peers that are not connected.
type redialer struct {
	peers []peer.AddrInfo
	mu    sync.Mutex
	last  map[peer.ID]time.Time // when each was last dialed
}

// redial dials, in the background, the configured peers n is not connected to that were
// not dialed in the last redialEvery.
func (n *Node) redial() {
	r := &n.redialer
	if len(r.peers) == 0 {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[peer.ID]time.Time{}
	}
	h := n.ipfs.PeerHost
	for _, p := range r.peers {
		if h.Network().Connectedness(p.ID) == network.Connected || now.Sub(r.last[p.ID]) < redialEvery {
			continue
		}
		r.last[p.ID] = now
		go func() {
			ctx, cancel := context.WithTimeout(n.ipfs.Context(), redialTimeout)
			defer cancel()
			// Past libp2p's backoff: the peer may be back since the last failure.
			if err := h.Connect(network.WithForceDirectDial(ctx, "disco: redial a configured peer"), p); err != nil {
				n.log.Debug("redial peer", "peer", p.ID, "err", err)
			}
		}()
	}
}
