package kubo

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"

	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/kubotest"
)

func TestAddresses(t *testing.T) {
	d, _ := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, addr := range []string{d.APIAddr(), d.APIURL() + "/"} {
		n, err := New(ctx, addr)
		if err != nil {
			t.Errorf("New(%q): %v", addr, err)
			continue
		}
		if id, err := n.Identity(ctx); err != nil || id.ID != d.ID || len(id.Addresses) == 0 {
			t.Errorf("Identity through %s = %+v, %v; want %s and its addresses", addr, id, err, d.ID)
		}
		n.Close()
	}
	for _, addr := range []string{"127.0.0.1:5001", "ftp://127.0.0.1:5001", "http://127.0.0.1:5001/api/v0", "/ip4/127.0.0.1/tcp"} {
		if n, err := New(ctx, addr); err == nil {
			n.Close()
			t.Errorf("New(%q) succeeded", addr)
		}
	}
}

// TestImportConfigChecked starts a daemon with Kubo's default import settings: its
// directories above the HAMT threshold would not get Disco's CIDs, so New refuses it.
func TestImportConfigChecked(t *testing.T) {
	d := kubotest.New(t)
	d.Start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := New(ctx, d.APIURL())
	if err == nil {
		n.Close()
		t.Fatal("New accepted a daemon that estimates directory sizes from links")
	}
	if !strings.Contains(err.Error(), "Import.UnixFSHAMTDirectorySizeEstimation") {
		t.Errorf("New's error does not name the setting: %v", err)
	}
}

// TestHungDaemon pauses the daemon: a call to MFS without a deadline must fail after the
// node's timeout rather than wait forever, and calls work again once the daemon runs.
func TestHungDaemon(t *testing.T) {
	d := daemon(t)
	ctx := context.Background()
	n, err := New(ctx, d.APIURL(), WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	d.Pause()
	start := time.Now()
	_, err = n.Stat(ctx, "/")
	if !errors.Is(err, errNoAnswer) || time.Since(start) > 10*time.Second {
		t.Errorf("Stat of a hung daemon = %v after %s; want no answer after a second", err, time.Since(start))
	}
	// Taken for down, the daemon is not waited for again for a while.
	start = time.Now()
	if _, err := n.Add(ctx, files.NewBytesFile([]byte("x"))); !errors.Is(err, ipfs.ErrUnavailable) || time.Since(start) > time.Second {
		t.Errorf("Add right after = %v after %s, want ErrUnavailable at once", err, time.Since(start))
	}
	d.Resume()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := n.Stat(ctx, "/")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stat once the daemon runs again: %v", err)
		}
	}
	// A call's own deadline still holds when the daemon is up.
	d.Pause()
	defer d.Resume()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := n.Add(short, files.NewBytesFile([]byte("x"))); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Add to a hung daemon = %v, want its context's deadline", err)
	}
}
