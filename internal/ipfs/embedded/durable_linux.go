package embedded

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS writes out the whole file system that holds f.
func syncFS(f *os.File) error { return unix.Syncfs(int(f.Fd())) }
