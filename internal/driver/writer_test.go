package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ack"
	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/ipfs/ipfstest"
)

// testWriterReleasedWithItsRequest opens a writer that is never closed, as Distribution
// leaves one when it refuses a PATCH for its offset: once the request is over, the upload
// takes its next writer.
func testWriterReleasedWithItsRequest(t *testing.T, node ipfs.Node) {
	d := newDriver(t, node)
	w, err := d.Writer(context.Background(), "/u/data", false)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "abc")
	w.Close()

	req, end := context.WithCancel(context.Background())
	if _, err := d.Writer(req, "/u/data", true); err != nil { // left open
		t.Fatal(err)
	}
	if _, err := d.Writer(context.Background(), "/u/data", true); err == nil {
		t.Fatal("two writers of one upload at once")
	}
	end()
	var next interface{ Size() int64 }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		w, err := d.Writer(context.Background(), "/u/data", true)
		if err == nil {
			next = w
			defer w.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after its request ended, the upload still refuses a writer: %v", err)
		}
	}
	if next.Size() != 3 {
		t.Errorf("the next writer starts at %d, want 3", next.Size())
	}
}

// testCancelAfterCommit cancels a committed and closed upload, as Distribution does when
// its digest turns out wrong: what was committed goes, and Cancel succeeds.
func testCancelAfterCommit(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	d := newDriver(t, node)
	w, err := d.Writer(ctx, "/u/data", false)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "not what the digest says")
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close() // Distribution closes it before it checks the digest
	if err := w.Cancel(ctx); err != nil {
		t.Errorf("Cancel after Commit: %v", err)
	}
	if _, err := d.Stat(ctx, "/u/data"); !IsNotFound(err) {
		t.Errorf("committed content after Cancel: %v", err)
	}
}

// testCloseFailureNotAcknowledged makes an upload's state impossible to save: its request
// hears of it, though Close's caller does not look.
func testCloseFailureNotAcknowledged(t *testing.T, node ipfs.Node) {
	spool := t.TempDir()
	d, err := New(node, fmt.Sprintf("/ack-%d", time.Now().UnixNano()), spool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, scope := ack.Track(context.Background())
	w, err := d.Writer(ctx, "/u/data", false)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "abc")
	// A file where the upload's spool directory was: nothing can be saved in it.
	dir := d.inner().spool.file("/u/data")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil {
		t.Error("Close saved nothing, and said nothing")
	}
	if err := scope.End(); err == nil {
		t.Error("the request was not told that its upload was not saved")
	}
}

// testIdleImportersBounded leaves many uploads waiting for their next part: only maxIdle
// of them keep an importer, and every upload goes on where it was.
func testIdleImportersBounded(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	d := newDriver(t, node)
	const n = maxIdle + 10
	for i := range n {
		w, err := d.Writer(ctx, fmt.Sprintf("/u%d/data", i), false)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "part one,")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	is := d.inner().imports
	is.mu.Lock()
	live := len(is.m)
	is.mu.Unlock()
	if live > maxIdle {
		t.Errorf("%d importers wait for their uploads, want at most %d", live, maxIdle)
	}
	for i := range n {
		p := fmt.Sprintf("/u%d/data", i)
		w, err := d.Writer(ctx, p, true)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, " part two")
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if b, err := d.GetContent(ctx, p); err != nil || string(b) != "part one, part two" {
			t.Errorf("%s = %q, %v", p, b, err)
		}
	}
}

// testTwoDriversShareUploads writes one upload through two drivers over one node and one
// uploads directory, as two Discos behind one address do, its parts landing on both in
// turn: each takes the upload where the other left it.
func testTwoDriversShareUploads(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	root, uploads := fmt.Sprintf("/shared-%d", time.Now().UnixNano()), t.TempDir()
	var ds []*Driver
	for range 2 {
		d, err := New(node, root, uploads)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	b := ipfstest.Content(3<<20+333, 31)
	cuts := []int{0, 700 << 10, 1<<20 + 5, 2<<20 + 100, len(b)}
	for i := range len(cuts) - 1 {
		d := ds[i%2]
		w, err := d.Writer(ctx, "/u/data", i > 0)
		if err != nil {
			t.Fatal(err)
		}
		if w.Size() != int64(cuts[i]) {
			t.Fatalf("part %d on driver %d: the writer starts at %d, want %d", i, i%2, w.Size(), cuts[i])
		}
		if _, err := w.Write(b[cuts[i]:cuts[i+1]]); err != nil {
			t.Fatal(err)
		}
		if i == len(cuts)-2 {
			if err := w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ds[0].GetContent(ctx, "/u/data")
	if err != nil || !bytes.Equal(got, b) {
		t.Errorf("the upload written through both drivers: %d bytes, %v; want %d bytes", len(got), err, len(b))
	}
}

// testPurgeUploads has Distribution's upload purger find uploads in progress, one stale
// and one not: the stale one goes, its spool with it.
func testPurgeUploads(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	d := newDriver(t, node)
	const repo = "/docker/registry/v2/repositories/app/x/_uploads/"
	// Distribution's purger knows uploads by their UUIDs.
	const stale, fresh = "01a23419-2551-7aa4-8d2d-2f1021646bac", "01a23419-2551-7aa4-8d2d-2f1021646bad"
	for id, started := range map[string]time.Time{stale: time.Now().Add(-48 * time.Hour), fresh: time.Now()} {
		w, err := d.Writer(ctx, repo+id+"/data", false)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "part of an upload")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := d.PutContent(ctx, repo+id+"/startedat", []byte(started.UTC().Format(time.RFC3339))); err != nil {
			t.Fatal(err)
		}
	}
	deleted, errs := storage.PurgeUploads(ctx, d, time.Now().Add(-24*time.Hour), true)
	if len(errs) > 0 || len(deleted) != 1 {
		t.Fatalf("PurgeUploads deleted %q, errors %v; want the stale upload", deleted, errs)
	}
	if _, err := d.Stat(ctx, repo+stale); !IsNotFound(err) {
		t.Errorf("the stale upload after the purge: %v", err)
	}
	if _, err := os.Stat(d.inner().spool.file(repo + stale + "/data")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale upload's spool after the purge: %v", err)
	}
	if _, err := d.Stat(ctx, repo+fresh+"/data"); err != nil && !IsNotFound(err) {
		t.Errorf("the fresh upload after the purge: %v", err)
	}
	if _, err := os.Stat(d.inner().spool.file(repo + fresh + "/data")); err != nil {
		t.Errorf("the fresh upload's spool after the purge: %v", err)
	}
}

// releaseRecorder is a node that holds nothing but counts holds and records releases.
type releaseRecorder struct {
	ipfs.Node
	mu       sync.Mutex
	holds    int
	released []string
}

func (r *releaseRecorder) Hold(context.Context, string, cid.Cid) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holds++
	return nil
}

func (r *releaseRecorder) Release(_ context.Context, hold string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.released = append(r.released, hold)
	return nil
}

// TestNewUploadReleasesNothing opens a writer for a new upload, as every POST does: with
// nothing spooled there, nothing can be held, and the node is not asked to release it.
// A writer that starts over an upload the spool has releases its hold.
func TestNewUploadReleasesNothing(t *testing.T) {
	r := &releaseRecorder{Node: embeddedNode}
	d := newDriver(t, r)
	ctx := context.Background()
	const p = "/docker/registry/v2/repositories/a/_uploads/u2/data"
	w, err := d.Writer(ctx, p, false)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "abc")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(r.released) != 0 {
		t.Errorf("a new upload's writer released %q, want nothing", r.released)
	}
	w, err = d.Writer(ctx, p, false)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cancel(ctx)
	if len(r.released) != 1 {
		t.Errorf("a writer starting over a spooled upload released %q, want its hold", r.released)
	}
}

// TestCommitHolds commits an upload of one block, which is linked with no hold, and one
// of several, which is held from its last chunk's add to its link, then released.
func TestCommitHolds(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		size            int
		holds, releases int
	}{
		{10, 0, 0},
		{2*ipfs.Import.ChunkSize + 1, 1, 1},
	} {
		r := &releaseRecorder{Node: embeddedNode}
		d := newDriver(t, r)
		p := fmt.Sprintf("/docker/registry/v2/repositories/a/_uploads/u%d/data", c.size)
		w, err := d.Writer(ctx, p, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(bytes.Repeat([]byte("x"), c.size)); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if r.holds != c.holds || len(r.released) != c.releases {
			t.Errorf("commit of %d bytes: %d holds, releases %q; want %d and %d", c.size, r.holds, r.released, c.holds, c.releases)
		}
	}
}
