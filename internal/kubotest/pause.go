package kubotest

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// Pause stops p with SIGSTOP, as a service that hangs, and waits until the kernel has
// stopped it; what names p in the failure.
func Pause(t testing.TB, p *os.Process, what string) {
	t.Helper()
	p.Signal(syscall.SIGSTOP)
	for deadline := time.Now().Add(10 * time.Second); !IsStopped(p.Pid); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (PID %d) not stopped 10s after SIGSTOP", what, p.Pid)
		}
	}
}
