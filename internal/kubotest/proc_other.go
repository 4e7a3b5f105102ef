//go:build !linux

package kubotest

import (
	"syscall"
	"time"
)

// SysProcAttr is empty where the kernel cannot kill a process whose test process died;
// t.Cleanup stops it.
func SysProcAttr() *syscall.SysProcAttr { return nil }

// isStopped cannot tell without /proc: it gives a stopped process a moment.
func isStopped(int) bool {
	time.Sleep(100 * time.Millisecond)
	return true
}
