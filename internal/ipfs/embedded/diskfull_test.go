package embedded

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
)

// TestCheckpointAfterDiskFull fills the disk of a node's repository and has it checkpoint
// changes whose blocks it holds already, so that only recording the root needs room: once
// space is freed, checkpoints must work again without reopening the node. (Kubo's
// leveldb datastore fails every write after one failed for want of room, until it is
// opened again.)
func TestCheckpointAfterDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v (this test needs root)", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	n := open(t, Options{Path: filepath.Join(dir, "ipfs"), Swarm: loopback})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var versions []cid.Cid
	for i := range 2 {
		c, err := n.Add(ctx, files.NewBytesFile(fmt.Appendf(nil, "version %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, c)
	}
	change := func(i int) error {
		if err := n.Link(ctx, "/registry/file", versions[i%2]); err != nil {
			return err
		}
		return n.checkpointNow(ctx)
	}
	for i := range 2 {
		if err := change(i); err != nil {
			t.Fatal(err)
		}
	}

	ballast := filepath.Join(dir, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*st.Bsize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	failed := 0
	for i := range 200 {
		if err := change(i); err != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("200 checkpoints on a full disk, and none failed")
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := change(i); err != nil {
			t.Fatalf("checkpoint once space is freed (%d of 200 failed on the full disk): %v", failed, err)
		}
	}
}
