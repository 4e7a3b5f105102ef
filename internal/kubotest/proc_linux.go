package kubotest

import "syscall"

// sysProcAttr has the kernel kill a daemon whose test process died without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
