package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ownFS gives a registry's data a file system of its own at dir, as a registry on its own
// volume has: an ext4 image file of size bytes (sparse), mounted there through a loop
// device. Without one, Disco's syncs (syncfs(2), which writes out the whole file system)
// would also write out what the reference has written and not synced. It needs root,
// mkfs.ext4 and loop devices; where it cannot have them, dir is a plain directory and
// ownFS says so. unmount undoes it; the image stays beside dir for -keep, and goes with
// the temporary directory otherwise.
func ownFS(ctx context.Context, dir string, size int64) (unmount func() error, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	nothing := func() error { return nil }
	if os.Geteuid() != 0 {
		progress("%s: on the temporary directory's file system (a file system of its own needs root)", dir)
		return nothing, nil
	}
	img := dir + ".img"
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return nil, err
	}
	if err := os.Truncate(img, size); err != nil {
		return nil, err
	}
	// Inode tables and journal written now, not by a kernel thread during the run.
	mkfs := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-N", "1000000", "-I", "128", "-E", "lazy_itable_init=0,lazy_journal_init=0", img)
	if out, err := mkfs.CombinedOutput(); err != nil {
		progress("%s: on the temporary directory's file system (mkfs.ext4: %v %s)", dir, err, out)
		return nothing, nil
	}
	if out, err := exec.CommandContext(ctx, "mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		progress("%s: on the temporary directory's file system (mount: %v %s)", dir, err, out)
		return nothing, nil
	}
	progress("%s: an ext4 file system of its own (%s, %d GiB)", dir, filepath.Base(img), size>>30)
	return func() error {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			return fmt.Errorf("umount %s: %w: %s", dir, err, out)
		}
		return nil
	}, nil
}
