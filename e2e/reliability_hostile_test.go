package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/disctest"
	"github.com/discoregistry/disco/internal/kubotest"
	"github.com/discoregistry/disco/internal/layout"
)

// TestReliabilityHostile has an attacker push hand-made CID repositories to one Disco, A,
// as ordinary blobs (see internal/disctest's builders), and asks another, B, peered with
// A, to pull them by CID: directories with ".", "" and ".." entries and other shapes no
// Disco makes, disco.json files that lie, a 1 TiB file behind made-up digests, a liar that
// shares a layer digest with an honest repository. B must refuse each, go on serving the
// honest repository as it is, answer its catalog fast, and keep its memory bounded.
func TestReliabilityHostile(t *testing.T) {
	t.Parallel()
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a := startDisco(t, discoOptions{})
	b := startDisco(t, discoOptions{
		YAML:  fmt.Sprintf("disco: {clonetimeout: 10s}\nhttp: {debug: {addr: %q, prometheus: {enabled: true, path: /metrics}}}", metrics),
		Peers: []string{a.PeerAddr()},
	})
	attacker := disctest.Remote(a.Host)
	rt := newCounting()

	img := randomImage(t, 256<<10, 2)
	h := pushImage(t, a, "honest/app", "v1", img)
	tree := honestTree(t, img)

	var tried, refused, fivexx int
	var refusedCIDs, honests []string
	var pulls tally
	before := memoryOf(t, b.PID)
	// refuse checks that B refuses the repository c, built by the attacker, by the
	// answer to a request for its manifest (or, with blob set, for that blob of it).
	refuse := func(what string, c cid.Cid, blob digest.Digest) {
		t.Helper()
		tried++
		u := b.URL("/v2/" + c.String() + "/manifests/latest")
		want := reply{404, "NAME_UNKNOWN"}
		if blob != "" {
			u = b.URL("/v2/" + c.String() + "/blobs/" + blob.String())
		}
		start := time.Now()
		res := sendLimited(t, u, 8<<20)
		got := res.reply()
		took := time.Since(start)
		switch {
		case got.status >= 500:
			fivexx++
			t.Errorf("%s: %s answered %d %s", what, u, got.status, res.body)
		case blob != "" && got.status == 404, got == want:
			refused++
			refusedCIDs = append(refusedCIDs, c.String())
		default:
			t.Errorf("%s: %s answered %d %q (%d bytes), want it refused: %v", what, u, got.status, got.code, len(res.body), want)
		}
		if took > 15*time.Second {
			t.Errorf("%s: refused after %s, want well within the 10s clone timeout and the fetch bound", what, took)
		}
	}
	withSub := func(name string, l disctest.Link) disctest.Dir {
		for _, e := range tree {
			if e.Name == name {
				return tree.With(disctest.Link{Name: name, Node: e.Node.(disctest.Dir).With(l)})
			}
		}
		t.Fatalf("no %s in the tree", name)
		return nil
	}
	sub := func(name string) disctest.Dir {
		for _, e := range tree {
			if e.Name == name {
				return e.Node.(disctest.Dir)
			}
		}
		t.Fatalf("no %s in the tree", name)
		return nil
	}
	push := func(d disctest.Dir) cid.Cid { return attacker.PushTree(t, "attacker/tree", d) }
	// The tree as A made it, rebuilt block by block: B clones it. What B refuses below, it
	// refuses for what was changed.
	copied := push(tree)
	rounds(1, func(round int) bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		pulls.add(pullCheck(ctx, rt, b.Host+"/"+copied.String()+":latest", h))
		cancel()

		for _, tc := range []struct {
			what string
			dir  disctest.Dir
		}{
			{"a . entry", tree.With(disctest.Link{Name: ".", Node: sub("_layers")})},
			{`a "" entry`, tree.With(disctest.Link{Name: "", Node: sub("_manifests")})},
			{"a .. entry", tree.With(disctest.Link{Name: "..", Node: sub("_layers")})},
			{"a . entry in _manifests", withSub("_manifests", disctest.Link{Name: ".", Node: sub("_manifests")})},
			{"a .. entry in _layers", withSub("_layers", disctest.Link{Name: "..", Node: sub("_layers")})},
			{"a name with a slash", tree.With(disctest.Link{Name: "_layers/sha256", Node: []byte("x")})},
			{"an entry Disco does not make", tree.With(disctest.Link{Name: "extra", Node: []byte("x")})},
			{"a file for a directory", tree.With(disctest.Link{Name: "_layers", Node: []byte("x")})},
			{"a disco.json that is not JSON", tree.With(disctest.Link{Name: "disco.json", Node: []byte("{")})},
			{"a disco.json with no blobs", tree.With(disctest.Link{Name: "disco.json", Node: []byte(`{"blobs":[]}`)})},
			{"a disco.json with a bad CID", lyingTree(t, tree, h.Hex, "bafy-not-a-cid")},
			{"a disco.json that lies about the manifest", lyingTree(t, tree, h.Hex, attacker.PushRaw(t, "attacker/tree", randomBytes(t, 1000)).String())},
			{"a tag naming no manifest of it", tree.With(disctest.Link{Name: "_manifests", Node: sub("_manifests").With(
				disctest.Link{Name: "tags", Node: disctest.TreeOf(map[string][]byte{
					"latest/current/link": []byte(digest.FromString("other").String())})})})},
		} {
			refuse(tc.what, push(tc.dir), "")
		}

		// A CID whose block is no directory: the bytes of a blob, asked for as dag-pb.
		junk := attacker.PushRaw(t, "attacker/junk", randomBytes(t, 100))
		refuse("a block that is not dag-pb", cid.NewCidV1(cid.DagProtobuf, junk.Hash()), "")

		// A layer of 1 TiB in three blocks, behind made-up digests: declared so, the
		// image is refused; declared small, its blob is.
		big := hugeFile(t, attacker)
		fake, _ := fakeImage(t, attacker, 1<<40, big)
		refuse("a 1 TiB layer", fake, "")
		fake, ld := fakeImage(t, attacker, 1024, big)
		refuse("a 1 TiB layer declared 1 KiB", fake, ld)

		// A liar shares the layer digest of an honest image that B does not hold yet, with
		// other bytes under it: B fetches them, finds the lie and refuses the repository.
		// Another maps that digest to blocks nobody has: while B waits for them, the
		// honest image pulls by its own CID, at once and as pushed.
		img2 := randomImage(t, 256<<10, 1)
		h2 := pushImage(t, a, fmt.Sprintf("honest/liar%d", round), "v1", img2)
		honest2 := cidOf(t, a, h2.String())
		honests = append(honests, honest2)
		tree2 := honestTree(t, img2)
		m2, err := img2.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		l2 := digest.Digest(m2.Layers[0].Digest.String())
		other := attacker.PushRaw(t, "attacker/liar", randomBytes(t, int(m2.Layers[0].Size)))
		refuse("a liar about the layer of an honest image", push(lyingTree(t, tree2, l2.Encoded(), other.String())), l2)
		stall := attacker.PushFile(t, "attacker/liar", 1<<20, unheldCID(t), unheldCID(t))
		staller := push(lyingTree(t, tree2, l2.Encoded(), stall.String()))
		var wg sync.WaitGroup
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL("/v2/"+staller.String()+"/blobs/"+l2.String()), nil)
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		})
		// The honest pull starts once the staller's fetch is under way: before, it would
		// not test that the fetches are apart.
		waitFetchStarted(t, metrics)
		tried++
		start := time.Now()
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		pulls.add(pullCheck(ctx, rt, b.Host+"/"+honest2+":latest", h2))
		cancel()
		if took := time.Since(start); took < 5*time.Second {
			refused++ // the staller did not hold up the honest pull
		} else {
			t.Errorf("with a liar's fetch of the same layer hanging, the honest image pulled in %s", took)
		}
		wg.Wait()
		return !t.Failed()
	})

	// B is as it was: its catalog answers fast and lists none of the hostile repositories,
	// no fetch goes on, and its memory is bounded.
	start := time.Now()
	res := send(t, http.MethodGet, b.URL("/v2/_catalog?n=1000"), nil)
	took := time.Since(start)
	var list struct{ Repositories []string }
	if res.status != http.StatusOK || json.Unmarshal(res.body, &list) != nil {
		t.Fatalf("catalog of B: %d %s", res.status, res.body)
	}
	if took > 2*time.Second {
		t.Errorf("the catalog of B answered in %s, want under 2s", took)
	}
	for _, c := range append(honests, copied.String()) {
		if !slices.Contains(list.Repositories, c) {
			t.Errorf("the catalog of B does not list the honest clone %s", c)
		}
	}
	for _, c := range refusedCIDs {
		if slices.Contains(list.Repositories, c) {
			t.Errorf("the catalog of B lists the refused repository %s", c)
		}
	}
	waitFetches(t, metrics)
	after := memoryOf(t, b.PID)
	figures(t, "hostile CID repositories: %d tried, %d refused; honest pulls %d, %d lost, %d corrupted; "+
		"victim's catalog in %s, RSS %.0f MiB before, %.0f MiB after, peak %.0f MiB; %d 5xx",
		tried, refused, pulls.pulls, pulls.lost, pulls.corrupted, took.Round(time.Millisecond),
		before.rss, after.rss, after.peak, fivexx+int(rt.n.Load()))
	if tried != refused {
		t.Errorf("%d of %d hostile repositories not refused", tried-refused, tried)
	}
	if after.peak > 300 {
		t.Errorf("the victim's peak RSS is %.0f MiB, want at most 300 MiB", after.peak)
	}
	pulls.check(t)
	rt.check(t)
}

// honestTree returns the CID repository Disco makes for img, with blobs of at most 1 MiB
// (each a raw block, whose CID is its digest's), as files by path.
func honestTree(t *testing.T, img v1.Image) disctest.Dir {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	md := digest.Digest(imageDigest(t, img).String())
	files := map[string][]byte{
		layout.RevisionLink(md):           []byte(md),
		layout.TagLink("latest"):          []byte(md),
		layout.TagIndexLink("latest", md): []byte(md),
	}
	type blob struct {
		Digest string `json:"digest"`
		CID    string `json:"cid"`
	}
	dj := []blob{{md.Encoded(), rawCID(t, md).String()}}
	for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		d := digest.Digest(b.Digest.String())
		files[layout.LayerLink(d)] = []byte(d)
		dj = append(dj, blob{d.Encoded(), rawCID(t, d).String()})
	}
	if files["disco.json"], err = json.Marshal(map[string]any{"blobs": dj}); err != nil {
		t.Fatal(err)
	}
	return disctest.TreeOf(files)
}

// rawCID is the CID of a blob of at most 1 MiB as Disco imports it: one raw block.
func rawCID(t *testing.T, d digest.Digest) cid.Cid {
	t.Helper()
	sum, err := hex.DecodeString(d.Encoded())
	if err != nil {
		t.Fatal(err)
	}
	mh, err := multihash.Encode(sum, multihash.SHA2_256)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, mh)
}

// lyingTree returns tree with its disco.json changed to map the digest hex to c.
func lyingTree(t *testing.T, tree disctest.Dir, hex, c string) disctest.Dir {
	t.Helper()
	i := slices.IndexFunc(tree, func(l disctest.Link) bool { return l.Name == "disco.json" })
	if i < 0 {
		t.Fatal("no disco.json in the tree")
	}
	var dj struct {
		Blobs []map[string]string `json:"blobs"`
	}
	if err := json.Unmarshal(tree[i].Node.([]byte), &dj); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range dj.Blobs {
		if b["digest"] == hex {
			b["cid"], found = c, true
		}
	}
	if !found {
		t.Fatalf("disco.json lists no %s", hex)
	}
	b, err := json.Marshal(dj)
	if err != nil {
		t.Fatal(err)
	}
	return tree.With(disctest.Link{Name: "disco.json", Node: b})
}

// hugeFile returns a file of 1 TiB in three blocks: a 1 MiB leaf, a node linking it 1024
// times, and a node linking that 1024 times.
func hugeFile(t *testing.T, attacker *disctest.Disco) cid.Cid {
	t.Helper()
	leaf := attacker.PushRaw(t, "attacker/huge", randomBytes(t, 1<<20))
	mid := attacker.PushFile(t, "attacker/huge", 1<<20, slices.Repeat([]cid.Cid{leaf}, 1024)...)
	return attacker.PushFile(t, "attacker/huge", 1<<30, slices.Repeat([]cid.Cid{mid}, 1024)...)
}

// fakeImage pushes, through attacker, the CID repository of an image made by hand: a
// manifest naming a config and one layer of a made-up digest and of size bytes, which
// disco.json maps to the content layer. It returns the repository's CID and the layer's
// digest.
func fakeImage(t *testing.T, attacker *disctest.Disco, size int64, layer cid.Cid) (cid.Cid, digest.Digest) {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	ld := digest.NewDigestFromBytes(digest.SHA256, randomBytes(t, 32))
	manifest := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), ld, size)
	md, cd := digest.FromBytes(manifest), digest.FromBytes(cfg)
	mc, cc := attacker.PushRaw(t, "attacker/img", manifest), attacker.PushRaw(t, "attacker/img", cfg)
	dj, err := json.Marshal(map[string]any{"blobs": []map[string]string{
		{"digest": md.Encoded(), "cid": mc.String()}, {"digest": cd.Encoded(), "cid": cc.String()},
		{"digest": ld.Encoded(), "cid": layer.String()}}})
	if err != nil {
		t.Fatal(err)
	}
	return attacker.PushTree(t, "attacker/img", disctest.TreeOf(map[string][]byte{
		layout.LayerLink(cd):              []byte(cd),
		layout.LayerLink(ld):              []byte(ld),
		layout.RevisionLink(md):           []byte(md),
		layout.TagLink("latest"):          []byte(md),
		layout.TagIndexLink("latest", md): []byte(md),
		"disco.json":                      dj,
	})), ld
}

// unheldCID returns the CID of a raw block that nobody has.
func unheldCID(t *testing.T) cid.Cid {
	t.Helper()
	mh, err := multihash.Sum(randomBytes(t, 64), multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, mh)
}

// sendLimited GETs u and reads at most limit bytes of the answer.
func sendLimited(t *testing.T, u string, limit int64) response {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	res, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, limit))
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// waitFetchStarted fails t unless the Disco whose metrics are on addr has a blob fetch in
// progress within 10 s.
func waitFetchStarted(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); metric(t, addr, "disco_clone_blob_fetches_in_progress") == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no blob fetch in progress 10 s after a request for a blob of unheld blocks")
		}
	}
}

// waitFetches fails t unless the Disco whose metrics are on addr has no blob fetch in
// progress within 10 s.
func waitFetches(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n := metric(t, addr, "disco_clone_blob_fetches_in_progress")
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%v blob fetches still in progress after their requests were answered", n)
			return
		}
	}
}

func freePort(t *testing.T) int { return kubotest.FreePorts(t, 1)[0] }
