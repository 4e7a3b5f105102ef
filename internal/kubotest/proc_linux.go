package kubotest

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// sysProcAttr has the kernel kill a daemon whose test process died without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// isStopped reports whether process pid is stopped by a signal: the signal takes effect
// some time after kill returns.
func isStopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) state ...", where comm may hold spaces and parentheses.
	_, rest, ok := strings.Cut(string(b[strings.LastIndexByte(string(b), ')')+1:]), " ")
	return ok && strings.HasPrefix(rest, "T")
}
