package netns

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary runs itself in a namespace as a helper: NETNS_HELPER=serve ADDR
// accepts one connection on ADDR and prints how many bytes it read; NETNS_HELPER=send
// ADDR N writes N bytes to ADDR.
func TestMain(m *testing.M) {
	if h := os.Getenv("NETNS_HELPER"); h != "" {
		if err := helper(strings.Fields(h)); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "serve":
		l, err := net.Listen("tcp", args[1])
		if err != nil {
			return err
		}
		fmt.Println("listening")
		c, err := l.Accept()
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, c)
		fmt.Println(n)
		return err
	case len(args) == 3 && args[0] == "send":
		n, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil {
			return err
		}
		c, err := net.DialTimeout("tcp", args[1], 10*time.Second)
		if err != nil {
			return err
		}
		if _, err := io.CopyN(c, zeros{}, n); err != nil {
			return err
		}
		return c.Close()
	}
	return fmt.Errorf("usage: serve ADDR | send ADDR N, not %q", args)
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: network namespaces need root (CI runs the tests as root)")
	}
}

// helperCmd runs the test binary as a helper in s.
func helperCmd(s *Namespace, args ...string) *exec.Cmd {
	cmd := s.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NETNS_HELPER="+strings.Join(args, " "))
	cmd.Stderr = os.Stderr
	return cmd
}

// serve starts a helper that accepts one connection on addr in s; wait returns the number
// of bytes it read.
func serve(t *testing.T, s *Namespace, addr string) (wait func() int64) {
	t.Helper()
	cmd := helperCmd(s, "serve", addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var line string
	if _, err := fmt.Fscanln(out, &line); err != nil || line != "listening" {
		t.Fatalf("serve %s in %s: printed %q (%v)", addr, s.Name, line, err)
	}
	return func() int64 {
		var n int64
		_, err := fmt.Fscanln(out, &n)
		if werr := cmd.Wait(); err != nil || werr != nil {
			t.Fatalf("serve %s in %s: %v, %v", addr, s.Name, err, werr)
		}
		return n
	}
}

func send(t *testing.T, s *Namespace, addr string, n int64) {
	t.Helper()
	if out, err := helperCmd(s, "send", addr, fmt.Sprint(n)).Output(); err != nil {
		t.Fatalf("send %d bytes to %s from %s: %v %s", n, addr, s.Name, err, out)
	}
}

func newNetwork(t *testing.T, n int) *Network {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nw, err := New(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nw.Close(); err != nil {
			t.Error(err)
		}
	})
	return nw
}

// TestNetwork checks each namespace's loopback, the links between namespaces and to the
// calling namespace, a cap on egress and the byte counts.
func TestNetwork(t *testing.T) {
	needRoot(t)
	nw := newNetwork(t, 2)
	a, b := nw.Namespaces()[0], nw.Namespaces()[1]
	if a.Addr == b.Addr || !a.Addr.Is4() || a.Addr.As4()[3] != 1 || b.Addr.As4()[3] != 2 || nw.HostAddr().As4()[3] != 254 {
		t.Fatalf("addresses %s, %s, host %s: want .1, .2 and .254 of a /24", a.Addr, b.Addr, nw.HostAddr())
	}
	ctx := context.Background()

	t.Run("loopback", func(t *testing.T) {
		wait := serve(t, b, "127.0.0.1:7001")
		send(t, b, "127.0.0.1:7001", 1000)
		if n := wait(); n != 1000 {
			t.Errorf("read %d bytes over loopback in %s, sent 1000", n, b.Name)
		}
	})

	t.Run("between namespaces", func(t *testing.T) {
		before, err := b.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wait := serve(t, b, b.Addr.String()+":7002")
		send(t, a, b.Addr.String()+":7002", 1<<20)
		if n := wait(); n != 1<<20 {
			t.Errorf("%s read %d bytes from %s, sent %d", b.Name, n, a.Name, 1<<20)
		}
		after, err := b.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := after.RxBytes - before.RxBytes; got < 1<<20 {
			t.Errorf("%s received %d bytes by its counters, want at least %d", b.Name, got, 1<<20)
		}
	})

	t.Run("from the calling namespace", func(t *testing.T) {
		wait := serve(t, b, b.Addr.String()+":7003")
		c, err := net.DialTimeout("tcp", b.Addr.String()+":7003", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("hello"))
		c.Close()
		if n := wait(); n != 5 {
			t.Errorf("read %d bytes, sent 5", n)
		}
	})

	t.Run("capped egress", func(t *testing.T) {
		const rate, size = 16_000_000, 3_000_000 // bit/s, bytes: 1.5s at the rate
		if err := a.LimitEgress(ctx, rate); err != nil {
			t.Fatal(err)
		}
		defer a.LimitEgress(ctx, 0)
		before, err := a.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wait := serve(t, b, b.Addr.String()+":7004")
		start := time.Now()
		send(t, a, b.Addr.String()+":7004", size)
		n := wait()
		elapsed := time.Since(start)
		after, err := a.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d bytes in %s capped at %d bit/s", n, elapsed, rate)
		// A cap can only make it slower; a busy machine too. Allow the bucket's burst.
		if min := time.Duration(float64(size-(64<<10)) * 8 / rate * float64(time.Second)); elapsed < min {
			t.Errorf("sent %d bytes in %s, want at least %s at %d bit/s", size, elapsed, min, rate)
		}
		if got := after.TxBytes - before.TxBytes; n != size || got < size {
			t.Errorf("%s read %d bytes, %s's counters say it sent %d; want %d", b.Name, n, a.Name, got, size)
		}
	})
}

// TestClose checks that Close leaves nothing behind, and that New removes what a network
// whose process died left.
func TestClose(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nw, err := New(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if names := namesOf(t, nw.id); len(names) != 5 {
		t.Errorf("network %s has %q, want two namespaces, a bridge and two veths", nw.id, names)
	}
	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}
	if names := namesOf(t, nw.id); len(names) > 0 {
		t.Errorf("after Close, %q remain", names)
	}

	// A process that dies releases its lock and removes nothing.
	stale, err := New(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	stale.lock.Close()
	if len(namesOf(t, stale.id)) == 0 {
		t.Fatal("the stale network has no namespace")
	}
	if err := CleanStale(ctx); err != nil {
		t.Fatal(err)
	}
	if names := namesOf(t, stale.id); len(names) > 0 {
		t.Errorf("after CleanStale, %q of a dead network remain", names)
	}
	if _, err := os.Stat(stale.lock.Name()); !os.IsNotExist(err) {
		t.Errorf("after CleanStale, lock file %s: %v, want it removed", stale.lock.Name(), err)
	}

	// One in use stays.
	live := newNetwork(t, 1)
	if err := CleanStale(ctx); err != nil {
		t.Fatal(err)
	}
	if names := namesOf(t, live.id); !slices.Contains(names, live.Namespaces()[0].Name) {
		t.Errorf("CleanStale removed a network in use: %q left", names)
	}
}

func namesOf(t *testing.T, id string) []string {
	t.Helper()
	names, err := ownedNames(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(names, func(n string) bool { return owned.FindStringSubmatch(n)[1] != id })
}
