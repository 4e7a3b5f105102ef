package mirror

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/layout"
)

// Mirrors of one upstream that are peers ask each other for content by digest, over a
// libp2p protocol of their own on the IPFS nodes' connections. Its name ends with a key
// of the upstream (see protocolFor), so only mirrors of the same upstream talk, and each
// knows which of its peers are such mirrors from what libp2p's identify protocol tells it.
//
// A request is one JSON line, an answer one or more:
//
//	{"op":"have","digest":"sha256:..."}                  → {"cid":"bafk...","size":123} | {"none":true}
//	{"op":"fetch","repository":"library/alpine","digest":"sha256:...","manifest":true}
//	                                                      → {"wait":true}... then {"cid":...,"size":...} | {"error":"..."}
//
// "have" asks whether the peer holds the blob or manifest d, and under which CID: the
// asker then fetches that CID over IPFS and checks every byte against d, as for any pull
// by CID. "fetch" asks the peer to mirror d first, from the upstream with its own
// credentials; it answers {"wait":true} every so often while it does.
//
// For each digest, one of the mirrors that know each other fetches from the upstream:
// the one that scores highest for the digest among them (rendezvous hashing over peer
// IDs), so that mirrors pulling the same image at once agree on who fetches each blob.
// The others ask it to, and wait.

const protocolPrefix = "/disco/mirror/1.0.0/"

// protocolFor returns the protocol of the mirrors of the upstream remoteURL.
func protocolFor(remoteURL string) protocol.ID {
	sum := sha256.Sum256([]byte(remoteURL))
	return protocol.ID(protocolPrefix + hex.EncodeToString(sum[:8]))
}

type request struct {
	Op         string `json:"op"`
	Repository string `json:"repository,omitempty"`
	Digest     string `json:"digest"`
	Manifest   bool   `json:"manifest,omitempty"`
}

type answer struct {
	CID   string `json:"cid,omitempty"`
	Size  int64  `json:"size,omitempty"`
	None  bool   `json:"none,omitempty"`
	Wait  bool   `json:"wait,omitempty"`
	Error string `json:"error,omitempty"`
}

// maxMessage bounds a request or answer line.
const maxMessage = 4 << 10

// peers asks the mirror's peers for content, and answers them.
type peers struct {
	m       *Mirror
	h       host.Host
	proto   protocol.ID
	trusted map[peer.ID]bool
	timeout time.Duration
	log     *slog.Logger

	wg sync.WaitGroup // requests being served
}

func newPeers(m *Mirror, h host.Host, remoteURL string, trusted []peer.ID, timeout time.Duration) *peers {
	p := &peers{m: m, h: h, proto: protocolFor(remoteURL), trusted: map[peer.ID]bool{}, timeout: timeout, log: m.log}
	for _, id := range trusted {
		p.trusted[id] = true
	}
	h.SetStreamHandler(p.proto, p.serve)
	return p
}

// close stops answering peers, and waits for the answers in progress.
func (p *peers) close() {
	p.h.RemoveStreamHandler(p.proto)
	p.wg.Wait()
}

// candidates returns the connected peers that mirror the same upstream.
func (p *peers) candidates() []peer.ID {
	var out []peer.ID
	for _, id := range p.h.Network().Peers() {
		if ps, err := p.h.Peerstore().SupportsProtocols(id, p.proto); err == nil && len(ps) > 0 {
			out = append(out, id)
		}
	}
	return out
}

// fetcher returns, of self and the candidates, the one whose turn it is to fetch d.
func fetcher(d digest.Digest, self peer.ID, candidates []peer.ID) peer.ID {
	best, bestScore := self, score(d, self)
	for _, c := range candidates {
		if s := score(d, c); s > bestScore {
			best, bestScore = c, s
		}
	}
	return best
}

func score(d digest.Digest, id peer.ID) uint64 {
	sum := sha256.Sum256([]byte(string(id) + "\x00" + d.String()))
	return binary.BigEndian.Uint64(sum[:8])
}

// found is content a peer holds.
type found struct {
	cid  cid.Cid
	size int64
	from peer.ID
}

// find asks every candidate whether it holds d and, if delegate is set and it is
// another's turn to fetch d, asks that one to fetch it. It returns the first peer that
// has d, or false once every peer has said no, failed, or taken too long.
func (p *peers) find(ctx context.Context, name string, d digest.Digest, k kind, delegate bool) (found, bool) {
	candidates := p.candidates()
	if len(candidates) == 0 {
		return found{}, false
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(chan found, len(candidates)+1)
	asking := 0
	ask := func(to peer.ID, req request) {
		asking++
		go func() {
			f, err := p.ask(ctx, to, req)
			if err != nil && ctx.Err() == nil {
				p.log.Debug("mirror: peer did not give", "peer", to, "op", req.Op, "digest", d, "err", err)
			}
			answers <- f
		}()
	}
	for _, c := range candidates {
		ask(c, request{Op: "have", Digest: d.String()})
	}
	if turn := fetcher(d, p.h.ID(), candidates); delegate && turn != p.h.ID() {
		ask(turn, request{Op: "fetch", Repository: name, Digest: d.String(), Manifest: k == manifestKind})
	}
	for range asking {
		if f := <-answers; f.cid.Defined() {
			return f, true
		}
	}
	return found{}, false
}

// ask sends req to the peer to and returns its answer. Each answer line must come within
// the peer timeout; a peer fetching for us sends one every third of it.
func (p *peers) ask(ctx context.Context, to peer.ID, req request) (found, error) {
	octx, cancel := context.WithTimeout(ctx, p.timeout)
	s, err := p.h.NewStream(network.WithNoDial(octx, "mirror peers are connected already"), to, p.proto)
	cancel()
	if err != nil {
		return found{}, err
	}
	defer s.Close()
	defer context.AfterFunc(ctx, func() { s.Reset() })()
	s.SetWriteDeadline(time.Now().Add(p.timeout))
	if err := json.NewEncoder(s).Encode(req); err != nil {
		s.Reset()
		return found{}, err
	}
	s.CloseWrite()
	r := bufio.NewReaderSize(io.LimitReader(s, 1<<20), maxMessage)
	for {
		s.SetReadDeadline(time.Now().Add(p.timeout))
		line, err := r.ReadSlice('\n')
		if err != nil {
			s.Reset()
			return found{}, err
		}
		var a answer
		if err := json.Unmarshal(line, &a); err != nil {
			return found{}, err
		}
		switch {
		case a.Wait && req.Op == "fetch":
			continue
		case a.Error != "":
			return found{}, errors.New(a.Error)
		case a.None:
			return found{}, nil
		}
		c, err := cid.Decode(a.CID)
		if err != nil {
			return found{}, fmt.Errorf("answer %q: %w", line, err)
		}
		return found{cid: c, size: a.Size, from: to}, nil
	}
}

// serve answers one request of a peer.
func (p *peers) serve(s network.Stream) {
	p.wg.Add(1)
	defer p.wg.Done()
	defer s.Close()
	from := s.Conn().RemotePeer()
	s.SetReadDeadline(time.Now().Add(p.timeout))
	line, err := bufio.NewReaderSize(io.LimitReader(s, maxMessage), maxMessage).ReadSlice('\n')
	if err != nil {
		s.Reset()
		return
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		p.reply(s, answer{Error: "bad request: " + err.Error()})
		return
	}
	d, err := digest.Parse(req.Digest)
	if err != nil {
		p.reply(s, answer{Error: "bad digest: " + err.Error()})
		return
	}
	ctx, cancel := context.WithCancel(p.m.ctx)
	defer cancel()
	switch req.Op {
	case "have":
		p.reply(s, p.have(ctx, d))
	case "fetch":
		if !p.trusted[from] {
			p.reply(s, answer{Error: "fetches are for the peers this mirror is configured with"})
			return
		}
		named, err := reference.WithName(req.Repository)
		if err != nil || global.UnderGlobalName(named.Name()) {
			p.reply(s, answer{Error: fmt.Sprintf("repository %q is not one of the upstream's", req.Repository)})
			return
		}
		k := blobKind
		if req.Manifest {
			k = manifestKind
		}
		done := make(chan error, 1)
		go func() { done <- p.m.fetchFor(ctx, named.Name(), d, k) }()
		tick := time.NewTicker(p.timeout / 3)
		defer tick.Stop()
		for {
			select {
			case err := <-done:
				if err != nil {
					p.reply(s, answer{Error: err.Error()})
					return
				}
				p.reply(s, p.have(ctx, d))
				return
			case <-tick.C:
				if !p.reply(s, answer{Wait: true}) {
					return // the asker has gone; the fetch goes on
				}
			}
		}
	default:
		p.reply(s, answer{Error: "unknown op " + req.Op})
	}
}

func (p *peers) reply(s network.Stream, a answer) bool {
	s.SetWriteDeadline(time.Now().Add(p.timeout))
	return json.NewEncoder(s).Encode(a) == nil
}

// have answers whether the registry holds d, and under which CID.
func (p *peers) have(ctx context.Context, d digest.Digest) answer {
	c, err := p.m.store.CID(ctx, layout.Blob(d))
	if driver.IsNotFound(err) {
		return answer{None: true}
	}
	if err != nil {
		return answer{Error: err.Error()}
	}
	fi, err := p.m.store.Stat(ctx, layout.Blob(d))
	if err != nil {
		return answer{Error: err.Error()}
	}
	return answer{CID: c.String(), Size: fi.Size()}
}

// fetchFor mirrors d of the repository name for a peer.
func (m *Mirror) fetchFor(ctx context.Context, name string, d digest.Digest, k kind) error {
	repo, err := m.repository(ctx, name)
	if err != nil {
		return err
	}
	size := int64(-1)
	if s, ok := m.sizes.Get(d); ok {
		size = s
	}
	_, err = m.ensure(ctx, repo, d, k, size, nil, false)
	return err
}
