package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// TestReliabilityDiskFull gives a Disco a small disk of its own, a tmpfs mounted on its
// HOME (its IPFS repository and uploads), and pushes until the disk is full: every push
// refused must be refused with a clear error, 507 and a message that says the disk is
// full, and every push acknowledged before must still pull. Once space is freed, pushes
// must work again at once, with no restart and no manual step, and after a restart too,
// also one that follows a kill -9 while the disk was full.
func TestReliabilityDiskFull(t *testing.T) {
	t.Parallel()
	var tries, acked, failedAfter int
	var refused, unclear []string
	var pulls tally
	var startFull string
	rt := newCounting()
	// Each round has a Disco of its own on a disk of its own, which it fills.
	ran := rounds(1, func(round int) bool {
		d := newDisco(t, discoOptions{})
		unmount := mountTmpfs(t, d, 192<<20)
		defer unmount()
		d.Start()
		var images []pushedImage
		ballast := filepath.Join(d.Home, "ballast")

		// push pushes an image of layers layers of size bytes and counts how it went.
		push := func(ref string, size int64, layers int) {
			t.Helper()
			img, err := newImage(size, layers)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			err = pushTo(ctx, rt, ref, img, noRetry)
			cancel()
			tries++
			switch {
			case err == nil:
				images = append(images, pushedImage{ref, imageDigest(t, img)})
			case diskFullError(err):
				refused = append(refused, ref)
			default:
				unclear = append(unclear, fmt.Sprintf("%s: %v", ref, err))
			}
		}
		// fill pushes until the disk is full and a few pushes more have been refused.
		fill := func(phase int) {
			t.Helper()
			fillDisk(t, ballast, 48<<20)
			refusedBefore := len(refused)
			for i := 0; len(refused) < refusedBefore+3; i++ {
				if len(unclear) >= 3 {
					t.Fatalf("pushes on a full disk fail without a clear error:\n%s", strings.Join(unclear, "\n"))
				}
				if i == 40 {
					t.Fatalf("40 pushes of 4 MiB and the disk (%d MiB free) is not full", freeSpace(t, d.Home)>>20)
				}
				push(fmt.Sprintf("%s/disk/full%d:%d", d.Host, phase, i), 2<<20, 2)
				if !d.running() {
					t.Fatalf("disco died as its disk filled; log %s:\n%s", d.Log, d.logTail())
				}
			}
		}
		// pushFreed pushes 3 images once space is freed: each must be acknowledged.
		pushFreed := func(phase int) {
			t.Helper()
			for i := range 3 {
				img, err := newImage(1<<20, 1)
				if err != nil {
					t.Fatal(err)
				}
				ref := fmt.Sprintf("%s/disk/freed%d:%d", d.Host, phase, i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				err = pushTo(ctx, rt, ref, img)
				cancel()
				if err != nil {
					failedAfter++
					t.Errorf("push %s once space was freed: %v", ref, err)
					continue
				}
				images = append(images, pushedImage{ref, imageDigest(t, img)})
			}
		}
		checkAll := func() {
			t.Helper()
			for _, p := range images {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				pulls.add(pullCheck(ctx, rt, p.ref, p.digest))
				cancel()
			}
		}

		// Full, then a little space at a time freed, so that pushes fail at every step:
		// 4 to 128 KiB freed, images of 1 to 64 KiB layers, some get their blobs in and
		// fail at the manifest, some fail at the journal.
		fill(0)
		checkAll()
		for i := range 24 {
			shrinkDisk(t, ballast, int64(4<<10)<<(i%6))
			push(fmt.Sprintf("%s/disk/nibble:%d", d.Host, i), int64(1<<10)<<(i%7), 1+i%2)
		}
		checkAll()
		// Freed with Disco running.
		freeDisk(t, ballast)
		pushFreed(0)
		checkAll()

		// Full again, and killed: Disco starts on the full disk, once its datastore has
		// room to open, serves what it holds and refuses pushes as before. Once space is
		// freed, pushes work again, with no restart, and after a restart too.
		fill(1)
		d.Kill()
		rest := ballast + "-rest"
		fillDisk(t, rest, 0)
		startFull = startOnFullDisk(t, d, ballast, func() {
			checkAll()
			again := ballast + "-again"
			fillDisk(t, again, 0)
			refusedBefore := len(refused)
			push(d.Host+"/disk/restarted:full", 2<<20, 2)
			if len(refused) == refusedBefore {
				t.Error("a push to Disco restarted on a full disk was not refused with 507")
			}
			freeDisk(t, again)
			freeDisk(t, rest)
			freeDisk(t, ballast)
			pushFreed(1)
		})
		d.Restart()
		checkAll()
		d.Stop()
		acked += len(images)
		return !t.Failed()
	})
	figures(t, "disk full: %d rounds, %d pushes on a full disk, %d refused with 507 %q, %d unclear; %d acknowledged, "+
		"%d lost, %d corrupted (pulled on the full disk, after kill -9 and a restart on it, and once space was freed); "+
		"once space was freed: %d pushes failed; start with no byte free: %s",
		ran, tries, len(refused), "no space left on device", len(unclear), acked, pulls.lost, pulls.corrupted, failedAfter, startFull)
	for _, u := range unclear {
		t.Errorf("a push on a full disk failed without a clear error: %s", u)
	}
	pulls.check(t)
}

type pushedImage struct {
	ref    string
	digest v1.Hash
}

// startOnFullDisk starts d's disco on a disk with no byte free, and says what it did.
// Kubo's leveldb datastore writes when it opens, about as much as its journal holds, so
// Disco exits, with an error that says the disk is full, until there is room for that:
// before each new try, the ballast, which must hold more than 4 MiB, frees 256 KiB. Once
// Disco starts, serving runs, and Disco must then stop on SIGTERM.
func startOnFullDisk(t *testing.T, d *Disco, ballast string, serving func()) string {
	t.Helper()
	const step, tries = 256 << 10, 16
	var exit string
	for try := range tries {
		if try > 0 {
			shrinkDisk(t, ballast, step)
		}
		last, started := tryStart(t, d, serving)
		switch {
		case started && try == 0:
			return "starts"
		case started:
			return fmt.Sprintf("exits with %s, and starts once %d KiB are freed", exit, try*step>>10)
		case !strings.Contains(last, "no space left on device"):
			t.Fatalf("disco on a full disk exits with %q, want an error that says the disk is full", last)
		}
		exit = strconv.Quote(regexp.MustCompile(`/[^ :]*/`).ReplaceAllString(last, ".../"))
	}
	t.Fatalf("disco on a full disk does not start with %d KiB freed: %s", tries*step>>10, exit)
	return ""
}

// tryStart starts d's disco, outside of d's own Start, and waits for it to be ready or to
// exit. Exited, it returns the last line it logged; ready, it runs serving and stops it.
func tryStart(t *testing.T, d *Disco, serving func()) (last string, started bool) {
	t.Helper()
	log, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(log, "=== e2e: start disco on a full disk at %s\n", time.Now().Format(time.RFC3339Nano))
	from, _ := log.Seek(0, io.SeekEnd)
	cmd := exec.Command(discoBin())
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = d.Home, d.env, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	log.Close()
	if err != nil {
		t.Fatalf("start disco: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	defer func() { // also when serving or t fails
		if !exited {
			cmd.Process.Kill()
			<-done
		}
	}()
	for deadline := time.Now().Add(startTimeout); ; time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-done:
			exited = true
			lines := strings.Split(strings.TrimSpace(d.logFrom(from)), "\n")
			if err == nil {
				t.Fatalf("disco on a full disk exited with no error before it was ready:\n%s", strings.Join(lines, "\n"))
			}
			return lines[len(lines)-1], false
		default:
		}
		if strings.Contains(d.logFrom(from), "registry listening") && d.ping() {
			serving()
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-done:
				exited = true
				if err != nil {
					t.Errorf("disco started on a full disk exited with %v after SIGTERM; log %s:\n%s", err, d.Log, d.logTail())
				}
			case <-time.After(stopTimeout):
				t.Errorf("disco started on a full disk did not stop within %s of SIGTERM", stopTimeout)
			}
			return "", true
		}
		if time.Now().After(deadline) {
			t.Fatalf("disco on a full disk neither ready nor exited after %s; log %s:\n%s", startTimeout, d.Log, d.logTail())
		}
	}
}

// diskFullError reports whether err is the registry's answer to a write on a full disk.
func diskFullError(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != 507 || len(terr.Errors) == 0 {
		return false
	}
	return strings.Contains(terr.Errors[0].Message, "no space left on device")
}

// mountTmpfs mounts a tmpfs of size bytes on d's HOME, which must be empty, and returns
// a function that unmounts it, stopping d first if it runs; it runs when the test ends,
// if not before.
func mountTmpfs(t *testing.T, d *Disco, size int64) func() {
	t.Helper()
	if err := syscall.Mount("tmpfs", d.Home, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("mount a tmpfs of %d MiB on %s: %v (this test needs root)", size>>20, d.Home, err)
	}
	unmount := sync.OnceFunc(func() {
		if d.running() {
			d.terminate()
		}
		if err := syscall.Unmount(d.Home, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", d.Home, err)
		}
	})
	t.Cleanup(unmount)
	return unmount
}

// freeSpace returns the bytes free on the file system of dir.
func freeSpace(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fillDisk takes the space of the file system of ballast but left bytes with the file
// ballast.
func fillDisk(t *testing.T, ballast string, left int64) {
	t.Helper()
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := freeSpace(t, filepath.Dir(ballast)) - left; n > 0 {
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
			t.Fatalf("fallocate %d MiB: %v", n>>20, err)
		}
	}
}

// shrinkDisk frees n bytes of the ballast, which must hold them.
func shrinkDisk(t *testing.T, ballast string, n int64) {
	t.Helper()
	fi, err := os.Stat(ballast)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < n {
		t.Fatalf("free %d KiB of %s: it holds %d KiB", n>>10, ballast, fi.Size()>>10)
	}
	if err := os.Truncate(ballast, fi.Size()-n); err != nil {
		t.Fatal(err)
	}
}

func freeDisk(t *testing.T, ballast string) {
	t.Helper()
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
}
