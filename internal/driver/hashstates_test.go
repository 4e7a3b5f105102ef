package driver

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
)

// TestHashStatesInSpool writes, reads and lists an upload's hash states as Distribution
// does between its requests: none of it reaches the node, and removing the upload
// removes them.
func TestHashStatesInSpool(t *testing.T) {
	n := &callCounter{Node: embeddedNode}
	d := newDriver(t, n)
	ctx := context.Background()
	const (
		upload = "/docker/registry/v2/repositories/a/b/_uploads/u1"
		dir    = upload + "/hashstates/sha256"
	)
	if err := d.PutContent(ctx, upload+"/startedat", []byte("now")); err != nil {
		t.Fatal(err)
	}
	w, err := d.Writer(ctx, upload+"/data", false)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "abc")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before := n.lookups.Load() + n.changes.Load()
	for _, offset := range []string{"0", "233", "4096"} {
		if err := d.PutContent(ctx, dir+"/"+offset, []byte("state at "+offset)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.PutContent(ctx, dir+"/233", []byte("state again")); err != nil {
		t.Fatal(err)
	}
	if got, err := d.List(ctx, dir); err != nil || !slices.Equal(got, []string{dir + "/0", dir + "/233", dir + "/4096"}) {
		t.Errorf("List = %q, %v", got, err)
	}
	if b, err := d.GetContent(ctx, dir+"/233"); err != nil || string(b) != "state again" {
		t.Errorf("GetContent = %q, %v", b, err)
	}
	if fi, err := d.Stat(ctx, dir+"/4096"); err != nil || fi.IsDir() || fi.Size() != int64(len("state at 4096")) {
		t.Errorf("Stat = %v, %v", fi, err)
	}
	if got := n.lookups.Load() + n.changes.Load() - before; got != 0 {
		t.Errorf("hash states cost %d node calls, want none", got)
	}
	if err := d.Delete(ctx, upload); err != nil {
		t.Fatal(err)
	}
	var notFound storagedriver.PathNotFoundError
	if _, err := d.GetContent(ctx, dir+"/0"); !errors.As(err, &notFound) {
		t.Errorf("GetContent of a hash state of a removed upload = %v, want PathNotFoundError", err)
	}
	if _, err := d.List(ctx, dir); !errors.As(err, &notFound) {
		t.Errorf("List of the hash states of a removed upload = %v, want PathNotFoundError", err)
	}
	if _, err := d.Stat(ctx, upload+"/startedat"); !errors.As(err, &notFound) {
		t.Errorf("Stat of a removed upload's startedat = %v, want PathNotFoundError", err)
	}
	if _, err := os.Stat(d.StorageDriver.(*driver).spool.file(upload)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the removed upload's spool directory: %v, want it gone", err)
	}
}

func TestIsHashState(t *testing.T) {
	for p, want := range map[string]bool{
		"/docker/registry/v2/repositories/a/_uploads/u/hashstates/sha256/0": true,
		"/docker/registry/v2/repositories/a/_uploads/u/hashstates":          true,
		"/docker/registry/v2/repositories/a/_uploads/u/data":                false,
		"/docker/registry/v2/repositories/a/_uploads/u/startedat":           false,
		"/docker/registry/v2/repositories/hashstates/_layers/sha256/x/link": false,
		"/docker/registry/v2/repositories/a/_uploads":                       false,
	} {
		if got := isHashState(p); got != want {
			t.Errorf("isHashState(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestCancelledUploadLeavesNoHashState cancels an upload as Distribution's DELETE
// handler does (Cancel, then its deferred Close, which saves a hash state): nothing of it
// may stay in the spool, where no purge would find it (PurgeUploads walks MFS).
func TestCancelledUploadLeavesNoHashState(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t, embeddedNode)
	reg, err := storage.NewRegistry(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	named, err := reference.WithName("a/b")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := reg.Repository(ctx, named)
	if err != nil {
		t.Fatal(err)
	}
	w, err := repo.Blobs(ctx).Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("some bytes")); err != nil {
		t.Fatal(err)
	}
	if err := w.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close() // the handler's deferred Close
	var left []string
	filepath.WalkDir(d.StorageDriver.(*driver).spool.dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			left = append(left, p)
		}
		return err
	})
	if len(left) > 0 {
		t.Errorf("a cancelled upload left %q in the spool", left)
	}
}
