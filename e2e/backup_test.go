package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestBackupRestore backs up a stopped Disco as docs/operations.md says, with tar of the
// node's repository and the uploads directory, restores the copy in a new HOME, and pulls
// the image, by name and by CID, from a Disco started on it.
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	d := startDisco(t, discoOptions{})
	img := randomImage(t, 2<<20, 2)
	digest := pushImage(t, d, "e2e/backup", "v1", img)
	c := cidOf(t, d, digest.String())
	d.Stop()

	backup := filepath.Join(t.TempDir(), "disco-backup.tar.gz")
	tar := lookTool(t, "tar")
	if out, err := exec.Command(tar, "-C", filepath.Join(d.Home, ".disco"), "-czf", backup, "ipfs", "uploads").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	r := newDisco(t, discoOptions{})
	if err := os.MkdirAll(filepath.Join(r.Home, ".disco"), 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tar, "-C", filepath.Join(r.Home, ".disco"), "-xzf", backup).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	r.Start()
	checkImage(t, r, "e2e/backup:v1", img)
	checkImage(t, r, c+":latest", img)
	if got := cidOf(t, r, digest.String()); got != c {
		t.Errorf("restored, the image's CID is %s, was %s", got, c)
	}
}
