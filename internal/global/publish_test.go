package global_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/disctest"
	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/global"
	"github.com/discoregistry/disco/internal/layout"
)

// stallingStore fails, after a wait, the Link of the digest repository made for a context
// that carries failKey.
type stallingStore struct {
	driver.Store
	digestRepo string
	stalled    chan struct{}
	release    chan struct{}
}

type failKey struct{}

func (s *stallingStore) Link(ctx context.Context, p string, c cid.Cid) error {
	if ctx.Value(failKey{}) != nil && p == s.digestRepo {
		close(s.stalled)
		<-s.release
		return errors.New("injected failure")
	}
	return s.Store.Link(ctx, p, c)
}

// TestPublishRollbackSparesOthers publishes one image twice at once, from two
// repositories: the first fails after filing it under its CID, and rolls back. The
// second, reported published, must find its CID repository still there.
func TestPublishRollbackSparesOthers(t *testing.T) {
	d := disctest.Start(t, "")
	img, _ := random.Image(2048, 1)
	h := d.Push(t, "app/one:v1", img)
	d.Push(t, "app/two:v1", img)
	c := d.CIDOf(t, h)
	top := digest.Digest(h.String())
	// Start again from nothing filed: remove the digest and CID repositories.
	plain, err := driver.New(d.Node, "/", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{c, h.Hex} {
		if err := plain.Delete(ctx, layout.Repository(name)); err != nil {
			t.Fatal(err)
		}
	}
	store := &stallingStore{Store: plain, digestRepo: layout.Repository(h.Hex),
		stalled: make(chan struct{}), release: make(chan struct{})}
	g, err := global.New(global.Options{Node: d.Node, Store: store})
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var failed error
	wg.Go(func() {
		_, failed = g.Publish(context.WithValue(ctx, failKey{}, true), "app/one", top)
	})
	<-store.stalled // the first has filed the CID repository and waits
	second := make(chan error, 1)
	go func() {
		_, err := g.Publish(ctx, "app/two", top)
		second <- err
	}()
	time.Sleep(200 * time.Millisecond)
	close(store.release)
	wg.Wait()
	if failed == nil {
		t.Fatal("the first publish did not fail")
	}
	if err := <-second; err != nil {
		t.Fatalf("the second publish: %v", err)
	}
	if _, err := plain.Stat(ctx, layout.Repository(c)); err != nil {
		t.Errorf("the CID repository of a published image: %v, want it there", err)
	}
}
