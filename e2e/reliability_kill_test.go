package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestReliabilityKill kills Disco with SIGKILL while pushes are in flight, round after
// round, and starts it again: every push acknowledged before must pull, by tag and by
// digest, with the bytes pushed. Half the pushers upload as go-containerregistry does (one
// PATCH a blob), half in PATCHes of 256 KiB, so that kills land in every part of an
// upload, and in checkpoints of the MFS journal.
func TestReliabilityKill(t *testing.T) {
	t.Parallel()
	d := startDisco(t, discoOptions{})
	rt := newCounting()
	var (
		mu     sync.Mutex
		acked  []pushedImage
		pulls  tally
		kills  int
		failed int // pushes cut off by a kill
		// acked[newFrom:] are the pushes acknowledged since the last restart.
		newFrom int
	)
	n := rounds(6, func(round int) bool {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for p := range 4 {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					img, err := newImage(int64(64<<10+rand.IntN(1<<20)), 1+rand.IntN(3))
					if err != nil {
						panic(err)
					}
					ref := fmt.Sprintf("%s/kill/p%d:r%d-%d", d.Host, p, round, i)
					if p%2 == 0 {
						err = pushTo(ctx, rt, ref, img)
					} else {
						err = pushChunked(ctx, rt, ref, img, 256<<10)
					}
					mu.Lock()
					if err == nil {
						acked = append(acked, pushedImage{ref, imageDigestOf(img)})
					} else {
						failed++
					}
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(500+rand.IntN(2000)) * time.Millisecond)
		d.Kill()
		kills++
		cancel()
		wg.Wait()
		d.Restart()
		for _, p := range toCheck(acked, newFrom) {
			for _, ref := range []string{p.ref, byDigest(p)} {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				pulls.add(pullCheck(ctx, rt, ref, p.digest))
				cancel()
			}
		}
		for _, p := range acked[newFrom:] {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			pulls.add(pullByCID(ctx, rt, p))
			cancel()
		}
		newFrom = len(acked)
		return !t.Failed()
	})
	figures(t, "kill -9: %d rounds, %d acknowledged, %d cut off, %d pulls, %d lost, %d corrupted, %d 5xx",
		n, len(acked), failed, pulls.pulls, pulls.lost, pulls.corrupted, rt.n.Load())
	if len(acked) < n {
		t.Errorf("%d pushes acknowledged in %d rounds: the pushers hardly pushed", len(acked), n)
	}
	pulls.check(t)
	rt.check(t)
}

// toCheck returns the pushes to check after a restart: all of them, but in a soak, where
// they pile up, those since the last restart and 100 others.
func toCheck(acked []pushedImage, newFrom int) []pushedImage {
	if *soak == 0 || newFrom <= 100 {
		return acked
	}
	out := slices.Clone(acked[newFrom:])
	for range 100 {
		out = append(out, acked[rand.IntN(newFrom)])
	}
	return out
}

// byDigest returns the reference of p by digest: host/repo@sha256:...
func byDigest(p pushedImage) string {
	return p.ref[:strings.LastIndex(p.ref, ":")] + "@" + p.digest.String()
}

func imageDigestOf(img v1.Image) v1.Hash {
	h, err := img.Digest()
	if err != nil {
		panic(err)
	}
	return h
}

// pushChunked pushes img to ref (host/repo:tag) through rt, each blob in PATCHes of
// chunk bytes, then its manifest.
func pushChunked(ctx context.Context, rt http.RoundTripper, ref string, img v1.Image, chunk int) error {
	host, rest, _ := strings.Cut(ref, "/")
	repo, tag, _ := strings.Cut(rest, ":")
	c := &http.Client{Transport: rt}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	blobs := [][]byte{cfg}
	for _, l := range layers {
		b, err := layerBytes(l)
		if err != nil {
			return err
		}
		blobs = append(blobs, b)
	}
	for _, b := range blobs {
		if err := uploadChunked(ctx, c, host, repo, b, chunk); err != nil {
			return err
		}
	}
	m, err := img.RawManifest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	_, err = do(ctx, c, http.MethodPut, "http://"+host+"/v2/"+repo+"/manifests/"+tag, m, http.StatusCreated,
		"Content-Type", string(mt))
	return err
}
