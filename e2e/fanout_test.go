package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/discoregistry/disco/internal/kubotest"
	"github.com/discoregistry/disco/internal/netns"
)

// TestFanout pulls one image by CID on four Discos at once, each in its own network
// namespace, all peered with each other and with the origin, whose egress is capped.
// Every pull must get the image, and the origin must send it less than twice: the Discos
// fetch its blocks from each other, not each from the origin. Times are logged, not
// checked. It runs alone (not in parallel with the other tests), so that they leave its
// Discos the CPU to answer each other.
func TestFanout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestFanout needs root, for network namespaces (scripts/test runs as root)")
	}
	const (
		pullers = 4
		size    = 32 << 20
		rate    = 50_000_000 // bit/s out of the origin
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw, err := netns.New(ctx, pullers+1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the Discos' cleanups, which stop them
		if err := nw.Close(); err != nil {
			t.Error(err)
		}
	})
	spaces := nw.Namespaces()
	if err := spaces[0].LimitEgress(ctx, rate); err != nil {
		t.Fatal(err)
	}

	var discos []*Disco
	var addrs, debug []string
	for _, s := range spaces {
		debug = append(debug, fmt.Sprintf("%s:%d", s.Addr, kubotest.FreePorts(t, 1)[0]))
		d := newDisco(t, discoOptions{Netns: s, YAML: fmt.Sprintf(
			"http: {debug: {addr: %q, prometheus: {enabled: true}}}", debug[len(debug)-1])})
		discos = append(discos, d)
		addrs = append(addrs, d.PeerAddr())
	}
	for i, d := range discos {
		for j, a := range addrs {
			if i != j {
				d.AddPeers(a)
			}
		}
		d.Start()
	}
	origin, leechers := discos[0], discos[1:]
	for i, d := range discos {
		waitConnections(t, d, debug[i], pullers)
	}

	img := randomImage(t, size, 1)
	digest := pushImage(t, origin, "fan/out", "v1", img)
	c := cidOf(t, origin, digest.String())
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	imageSize, err := layers[0].Size()
	if err != nil {
		t.Fatal(err)
	}

	before := stats(t, spaces)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, pullers)
	times := make([]time.Duration, pullers)
	for i, d := range leechers {
		wg.Go(func() {
			errs[i] = pullFanned(ctx, d.Host+"/"+c, digest.String(), layer.String())
			times[i] = time.Since(start)
		})
	}
	wg.Wait()
	after := stats(t, spaces)
	for i, err := range errs {
		if err != nil {
			t.Errorf("pull on Disco %d (%s): %v", i+1, leechers[i].Host, err)
		}
	}

	sent := after[0].TxBytes - before[0].TxBytes
	t.Logf("%d MiB layer, origin capped at %d Mbit/s: one pull alone at the cap would take %.1fs",
		imageSize>>20, rate/1_000_000, float64(imageSize)*8/rate)
	for i := range leechers {
		t.Logf("Disco %d: pulled in %.1fs, received %.2f× the layer", i+1, times[i].Seconds(),
			float64(after[i+1].RxBytes-before[i+1].RxBytes)/float64(imageSize))
	}
	t.Logf("the origin sent %.2f× the layer", float64(sent)/float64(imageSize))
	if sent >= 2*imageSize {
		t.Errorf("the origin sent %d bytes for a %d-byte layer pulled by %d Discos at once: %.2f× it, want less than 2×",
			sent, imageSize, pullers, float64(sent)/float64(imageSize))
	}
}

// waitConnections waits until d's IPFS node has n connections, by the metrics on its
// debug address.
func waitConnections(t *testing.T, d *Disco, debug string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := metric(t, debug, `libp2p_rcmgr_connections{dir="inbound",scope="system"}`) +
			metric(t, debug, `libp2p_rcmgr_connections{dir="outbound",scope="system"}`)
		if int(got) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("disco %s has %v IPFS connections after 30s, want %d", d.Host, got, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pullFanned pulls ref with go-containerregistry and checks the manifest's digest and the
// layer's bytes.
func pullFanned(ctx context.Context, ref, digest, layer string) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	got, err := img.Digest()
	if err != nil {
		return err
	}
	if got.String() != digest {
		return fmt.Errorf("%s: manifest digest %s, pushed %s", ref, got, digest)
	}
	if _, err := img.RawConfigFile(); err != nil {
		return err
	}
	h, err := v1.NewHash(layer)
	if err != nil {
		return err
	}
	l, err := img.LayerByDigest(h)
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	sha := sha256.New()
	if _, err := io.Copy(sha, rc); err != nil {
		return fmt.Errorf("%s: layer: %w", ref, err)
	}
	if sum := fmt.Sprintf("sha256:%x", sha.Sum(nil)); sum != layer {
		return fmt.Errorf("%s: layer has digest %s, want %s", ref, sum, layer)
	}
	return nil
}

func stats(t *testing.T, spaces []*netns.Namespace) []netns.Stats {
	t.Helper()
	var out []netns.Stats
	for _, s := range spaces {
		st, err := s.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, st)
	}
	return out
}
