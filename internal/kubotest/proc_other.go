//go:build !linux

package kubotest

import "syscall"

// sysProcAttr is empty where the kernel cannot kill a daemon whose test process died;
// t.Cleanup stops it.
func sysProcAttr() *syscall.SysProcAttr { return nil }
