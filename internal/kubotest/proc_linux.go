package kubotest

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// SysProcAttr has the kernel kill a process a test started (a daemon, a server) when the
// test process dies without stopping it.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// IsStopped reports whether process pid is stopped by a signal: the signal takes effect
// some time after kill returns.
func IsStopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) state ...", where comm may hold spaces and parentheses.
	_, rest, ok := strings.Cut(string(b[strings.LastIndexByte(string(b), ')')+1:]), " ")
	return ok && strings.HasPrefix(rest, "T")
}
