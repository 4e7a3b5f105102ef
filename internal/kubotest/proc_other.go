//go:build !linux

package kubotest

import (
	"syscall"
	"time"
)

// SysProcAttr is empty where the kernel cannot kill a process whose test process died;
// t.Cleanup stops it.
func SysProcAttr() *syscall.SysProcAttr { return nil }

// IsStopped cannot tell without /proc: it gives a stopped process a moment.
func IsStopped(int) bool {
	time.Sleep(100 * time.Millisecond)
	return true
}
