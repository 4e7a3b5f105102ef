package driver

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/ipfs/ipfstest"
	"github.com/discoregistry/disco/internal/ipfs/kubo"
	"github.com/discoregistry/disco/internal/kubotest"
)

// TestKubo runs the tests over the node of a Kubo daemon, with Disco's import profile.
func TestKubo(t *testing.T) {
	d := kubotest.New(t)
	d.Run("config", "profile", "apply", "unixfs-v1-2025")
	d.Start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := kubo.New(ctx, d.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	runNodeTests(t, n)
	t.Run("UploadSurvivesDaemonGC", func(t *testing.T) { testUploadSurvivesDaemonGC(t, d, n) })
}

// testUploadSurvivesDaemonGC collects the daemon's garbage between the parts of an
// upload, and after its last part before it is committed: what the upload added is kept.
func testUploadSurvivesDaemonGC(t *testing.T, daemon *kubotest.Daemon, n *kubo.Node) {
	ctx := context.Background()
	d := newDriver(t, n)
	b := ipfstest.Content(3<<20+77, 21)
	for i, part := range [][]byte{b[:2<<20+5], b[2<<20+5:]} {
		w, err := d.Writer(ctx, "/u/data", i > 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(part); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		daemon.Run("repo", "gc")
	}
	w, err := d.Writer(ctx, "/u/data", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("commit after the daemon's gc: %v", err)
	}
	w.Close()
	daemon.Run("repo", "gc")
	got, err := d.GetContent(ctx, "/u/data")
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("the upload after the daemon's gc: %d bytes, %v", len(got), err)
	}
}
