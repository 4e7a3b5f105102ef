//go:build !linux

package kubotest

import (
	"syscall"
	"time"
)

// sysProcAttr is empty where the kernel cannot kill a daemon whose test process died;
// t.Cleanup stops it.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// isStopped cannot tell without /proc: it gives a stopped process a moment.
func isStopped(int) bool {
	time.Sleep(100 * time.Millisecond)
	return true
}
