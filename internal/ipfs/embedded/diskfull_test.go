package embedded

import (
	"bytes"
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
	fill(t, ballast, 0)
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

// TestOpenOnFullDisk opens a node whose journal holds a change, and a record a crash cut
// short, on a disk with less room than a checkpoint leaves: the node starts, serves the
// change, and takes more in its journal; once space is freed, it checkpoints them all.
func TestOpenOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v (this test needs root)", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := Options{Path: filepath.Join(dir, "ipfs"), Swarm: loopback}
	n := open(t, o)
	var added []cid.Cid
	for i := range 2 {
		c, err := n.Add(ctx, files.NewBytesFile(fmt.Appendf(nil, "file %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		added = append(added, c)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	// What a process killed after acknowledging /a leaves, and a record cut short.
	j, err := os.OpenFile(filepath.Join(o.Path, journalFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(j, "{\"path\":\"/a\",\"cid\":%q}\n{\"path\":\"/cut", added[0])
	j.Close()

	ballast := filepath.Join(dir, "ballast")
	fill(t, ballast, 512<<10)
	n = open(t, o)
	if _, err := n.Stat(ctx, "/a"); err != nil {
		t.Fatalf("the change the journal holds, after opening on a full disk: %v", err)
	}
	if err := n.Link(ctx, "/b", added[1]); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatalf("a change on a full disk, into the journal: %v", err)
	}
	// Were Disco killed now, the next start would apply these records.
	b, err := os.ReadFile(filepath.Join(o.Path, journalFile))
	if err != nil {
		t.Fatal(err)
	}
	if recs, _, err := readRecords(bytes.NewReader(b)); err != nil || len(recs) != 2 {
		t.Errorf("the journal on a full disk holds %q: %d records (%v), want /a and /b", b, len(recs), err)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if err := n.checkpointNow(ctx); err != nil {
		t.Fatalf("checkpoint once space is freed: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = open(t, o)
	for _, p := range []string{"/a", "/b"} {
		if _, err := n.Stat(ctx, p); err != nil {
			t.Errorf("%s after the checkpoint and a restart: %v", p, err)
		}
	}
}

// fill takes the space of the disk of ballast but left bytes with the file ballast.
func fill(t *testing.T, ballast string, left int64) {
	t.Helper()
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(ballast), &st); err != nil {
		t.Fatal(err)
	}
	if n := int64(st.Bavail)*st.Bsize - left; n > 0 {
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
			t.Fatal(err)
		}
	}
}
