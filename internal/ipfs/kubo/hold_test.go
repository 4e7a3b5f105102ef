package kubo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/ipfs/ipfstest"
	"github.com/discoregistry/disco/internal/kubotest"
)

// TestHoldSurvivesGC uploads a file as the driver does, chunk by chunk, with its chunks
// held two at a time as requests would bring them, and runs the daemon's garbage
// collection between the adds and the Link, with a restart of the daemon on the way: the
// file must be whole. A chunk added without a hold
// goes with the first collection, and the held ones with the first after their hold is
// released and the file unlinked, which shows that the collections collect.
func TestHoldSurvivesGC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, n := start(t)
	// As long as the path of an upload in a repository with a name of 255 characters.
	hold := "/disco/uploads/" + strings.Repeat("r", 255) + "/_uploads/u1/data"
	b := ipfstest.Content(3<<20+5, 21)
	var parts []ipfs.Part
	for off := 0; off < len(b); off += ipfs.Import.ChunkSize {
		part := b[off:min(off+ipfs.Import.ChunkSize, len(b))]
		c, err := n.Add(ctx, files.NewBytesFile(part))
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, ipfs.Part{CID: c, Size: int64(len(part))})
		if len(parts)%2 == 0 {
			if err := ipfs.HoldParts(ctx, n, hold, parts[len(parts)-2:]); err != nil {
				t.Fatalf("HoldParts: %v", err)
			}
		}
	}
	if err := ipfs.HoldParts(ctx, n, hold, parts[len(parts)/2*2:]); err != nil {
		t.Fatalf("HoldParts: %v", err)
	}
	loose, err := n.Add(ctx, files.NewBytesFile([]byte("not held")))
	if err != nil {
		t.Fatal(err)
	}

	d.Run("repo", "gc")
	if has(t, d, loose) {
		t.Fatal("a chunk that nothing held survived the garbage collection: it does not collect")
	}
	if err := n.Hold(ctx, "/other", loose); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("Hold of collected content = %v, want ErrNotFound at once", err)
	}
	// A DAG whose root is there and one of whose leaves was collected is no more held
	// than one without its root: the driver holds the chunks of a request joined.
	again, err := n.Add(ctx, files.NewBytesFile([]byte("held")))
	if err != nil {
		t.Fatal(err)
	}
	lost := []ipfs.Part{{CID: again, Size: 4}, {CID: loose, Size: 8}}
	if err := ipfs.HoldParts(ctx, n, "/other", lost); !errors.Is(err, ipfs.ErrNotFound) {
		t.Errorf("HoldParts of chunks one of which was collected = %v, want ErrNotFound", err)
	}
	d.Restart()
	d.Run("repo", "gc")
	for _, p := range parts {
		if !has(t, d, p.CID) {
			t.Fatalf("held chunk %s collected", p.CID)
		}
	}

	c, err := n.Join(ctx, parts)
	if err != nil {
		t.Fatal(err)
	}
	if err := ipfs.Hold(ctx, n, hold, c); err != nil {
		t.Fatal(err)
	}
	if err := ipfs.Release(ctx, n, "/disco/upload"); err != nil { // a prefix, not a hold above
		t.Fatal(err)
	}
	d.Run("repo", "gc")
	if err := n.Link(ctx, "/blob", c); err != nil {
		t.Fatalf("Link after gc: %v", err)
	}
	if err := ipfs.Release(ctx, n, "/disco/uploads"); err != nil { // a hold above the upload's
		t.Fatal(err)
	}
	d.Run("repo", "gc")
	if got, err := ipfs.ReadFile(ctx, n, "/blob", int64(len(b))); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("the file after gc: %d bytes, %v; want its %d bytes", len(got), err, len(b))
	}

	if err := n.Remove(ctx, "/blob"); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); err != nil { // what a removal frees, a Flush lets go of
		t.Fatal(err)
	}
	d.Run("repo", "gc")
	if has(t, d, parts[0].CID) {
		t.Error("a released and unlinked chunk survived the garbage collection")
	}
	if err := n.Release(ctx, "/never/held"); err != nil {
		t.Errorf("Release of a hold never made: %v", err)
	}
}

// has reports whether the daemon's blockstore has the block c.
func has(t *testing.T, d *kubotest.Daemon, c cid.Cid) bool {
	t.Helper()
	for _, line := range strings.Fields(d.Run("refs", "local")) {
		if l, err := cid.Decode(line); err == nil && bytes.Equal(l.Hash(), c.Hash()) {
			return true
		}
	}
	return false
}

// TestConcurrentHolds makes holds under one new hold at once, which has the daemon make
// its directory for several calls at the same time: every hold must be made.
func TestConcurrentHolds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, n := start(t)
	for round := range 4 {
		hold := fmt.Sprintf("/race/%d/a/b/data", round)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			wg.Go(func() {
				c, err := n.Add(ctx, files.NewBytesFile(fmt.Appendf(nil, "%d %d", round, i)))
				if err == nil {
					err = n.Hold(ctx, hold, c)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Hold: %v", err)
			}
		}
		dir, _ := n.holdDir(hold)
		if es, err := n.List(ctx, dir); err != nil || len(es) != 8 {
			t.Errorf("hold %s: %d entries, %v; want 8", hold, len(es), err)
		}
	}
}

// TestCollectGarbage has Disco run the daemon's garbage collection: what MFS links and
// what it is told to keep stays, the rest goes, and it says how much.
func TestCollectGarbage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, n := start(t)
	add := func(s string) cid.Cid {
		c, err := n.Add(ctx, files.NewBytesFile([]byte(s)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	linked, kept, dropped := add("linked"), add("kept"), add("dropped")
	if err := n.Link(ctx, "/gc/linked", linked); err != nil {
		t.Fatal(err)
	}
	stats, err := n.CollectGarbage(ctx, []cid.Cid{kept})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Blocks == 0 {
		t.Error("nothing removed")
	}
	for c, want := range map[cid.Cid]bool{linked: true, kept: true, dropped: false} {
		if got := has(t, d, c); got != want {
			t.Errorf("block %s after gc: have %v, want %v", c, got, want)
		}
	}
}
