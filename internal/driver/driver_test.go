package driver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/testsuites"
	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/ipfs"
	"github.com/discoregistry/disco/internal/ipfs/embedded"
	"github.com/discoregistry/disco/internal/ipfs/ipfstest"
)

// embeddedNode is one embedded IPFS node for all tests in this package; each driver gets
// its own MFS root directory on it.
var embeddedNode ipfs.Node

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "disco-driver-test")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	n, err := embedded.Open(ctx, embedded.Options{Path: dir, Swarm: []string{"/ip4/127.0.0.1/tcp/0"}})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	embeddedNode = n
	code := m.Run()
	n.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// nodeTests run against the driver over every kind of node: TestEmbedded runs them over
// the embedded node, TestKubo over a Kubo daemon.
var nodeTests = []struct {
	name string
	f    func(*testing.T, ipfs.Node)
}{
	{"Suite", testSuite},
	{"ChunkingDoesNotChangeCID", testChunkingDoesNotChangeCID},
	{"UploadSurvivesRestart", testUploadSurvivesRestart},
	{"DeleteRemovesSpool", testDeleteRemovesSpool},
	{"UploadImportedOnce", testUploadImportedOnce},
	{"SpoolCutShort", testSpoolCutShort},
	{"ListSkipsInvalidNames", testListSkipsInvalidNames},
	{"WriterReleasedWithItsRequest", testWriterReleasedWithItsRequest},
	{"CancelAfterCommit", testCancelAfterCommit},
	{"CloseFailureNotAcknowledged", testCloseFailureNotAcknowledged},
	{"IdleImportersBounded", testIdleImportersBounded},
	{"Snapshot", testSnapshot},
	{"WalkAsFallback", testWalkAsFallback},
	{"UploadsLeaveNoDirectories", testUploadsLeaveNoDirectories},
	{"TwoDriversShareUploads", testTwoDriversShareUploads},
	{"PurgeUploads", testPurgeUploads},
}

func runNodeTests(t *testing.T, node ipfs.Node) {
	for _, tt := range nodeTests {
		t.Run(tt.name, func(t *testing.T) { tt.f(t, node) })
	}
}

func TestEmbedded(t *testing.T) { runNodeTests(t, embeddedNode) }

func newDriver(t testing.TB, node ipfs.Node) *Driver {
	d, err := New(node, fmt.Sprintf("/%s-%d", t.Name(), time.Now().UnixNano()), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// testSuite runs Distribution's shared storage driver suite.
func testSuite(t *testing.T, node ipfs.Node) {
	d := newDriver(t, node)
	testsuites.Driver(t, func() (storagedriver.StorageDriver, error) { return d, nil }, false)
}

// writeChunks uploads b through Writer in pieces of the given sizes, closing and
// reopening the writer between pieces as Distribution does between PATCH requests.
func writeChunks(t *testing.T, d *Driver, p string, b []byte, sizes ...int) {
	t.Helper()
	ctx := context.Background()
	off := 0
	for i, size := range append(sizes, len(b)) {
		w, err := d.Writer(ctx, p, i > 0)
		if err != nil {
			t.Fatal(err)
		}
		if w.Size() != int64(off) {
			t.Fatalf("reopened writer at %d, want %d", w.Size(), off)
		}
		end := min(off+size, len(b))
		if _, err := w.Write(b[off:end]); err != nil {
			t.Fatal(err)
		}
		off = end
		if off == len(b) {
			if err := w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if off == len(b) {
			return
		}
	}
}

// testChunkingDoesNotChangeCID uploads the same bytes whole and in chunks of several
// sizes, and checks that every upload ends as the DAG a plain import of the bytes gives.
func testChunkingDoesNotChangeCID(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	d := newDriver(t, node)
	b := ipfstest.Content(3<<20+12345, 7)
	want, err := node.Add(ctx, files.NewBytesFile(b))
	if err != nil {
		t.Fatal(err)
	}
	for i, sizes := range [][]int{nil, {1}, {5 << 20}, {1000, 1 << 20, 77}, {1 << 20, 1 << 20, 1 << 20}} {
		p := fmt.Sprintf("/uploads/%d/data", i)
		writeChunks(t, d, p, b, sizes...)
		e, err := node.Stat(ctx, d.StorageDriver.(*driver).mfs(p))
		if err != nil {
			t.Fatal(err)
		}
		if e.CID != want {
			t.Errorf("chunks %v: CID %s, want %s", sizes, e.CID, want)
		}
		got, err := d.GetContent(ctx, p)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("chunks %v: content differs (%v)", sizes, err)
		}
	}
}

// testUploadSurvivesRestart resumes uploads with a new driver on the same spool, as after
// a restart of Disco: a short one, and one with full chunks added and one in progress.
func testUploadSurvivesRestart(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	for _, tt := range []struct {
		b   []byte
		cut int
	}{
		{[]byte("hello, world"), 7},
		{ipfstest.Content(2<<20+500, 13), 1<<20 + 100},
	} {
		spool, root := t.TempDir(), fmt.Sprintf("/restart-%d", time.Now().UnixNano())
		d, err := New(node, root, spool)
		if err != nil {
			t.Fatal(err)
		}
		w, err := d.Writer(ctx, "/u/data", false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(tt.b[:tt.cut]); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if d, err = New(node, root, spool); err != nil {
			t.Fatal(err)
		}
		writeChunksFrom(t, d, "/u/data", tt.b, tt.cut)
		want, _ := node.Add(ctx, files.NewBytesFile(tt.b))
		if e, err := node.Stat(ctx, d.StorageDriver.(*driver).mfs("/u/data")); err != nil || e.CID != want {
			t.Errorf("%d bytes: CID %v (%v), want %s", len(tt.b), e.CID, err, want)
		}
	}
}

// testDeleteRemovesSpool deletes an upload's directory: what is spooled below it goes.
func testDeleteRemovesSpool(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	spool := t.TempDir()
	d, err := New(node, fmt.Sprintf("/delete-%d", time.Now().UnixNano()), spool)
	if err != nil {
		t.Fatal(err)
	}
	w, err := d.Writer(ctx, "/u2/data", false)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "x")
	w.Close()
	if err := d.Delete(ctx, "/u2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spool + "/u2"); !os.IsNotExist(err) {
		t.Errorf("spool not removed: %v", err)
	}
}

// testUploadsLeaveNoDirectories commits, cancels and deletes uploads in repositories as
// Distribution lays them out: no directory of a repository is left in the uploads
// directory, and those an older Disco left are removed when the driver starts.
func testUploadsLeaveNoDirectories(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	uploads := t.TempDir()
	root := fmt.Sprintf("/uploads-%d", time.Now().UnixNano())
	if err := os.MkdirAll(filepath.Join(uploads, "old/repositories/a/_uploads"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(uploads, "http-secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := New(node, root, uploads)
	if err != nil {
		t.Fatal(err)
	}
	for i, end := range []string{"commit", "cancel", "delete"} {
		dir := fmt.Sprintf("/docker/registry/v2/repositories/org/r%d/_uploads/u%d", i, i)
		w, err := d.Writer(ctx, dir+"/data", false)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, end)
		switch end {
		case "commit":
			err = w.Commit(ctx)
		case "cancel":
			err = w.Cancel(ctx)
		case "delete":
			err = errors.Join(w.Close(), d.Delete(ctx, dir))
		}
		if err != nil {
			t.Fatalf("%s: %v", end, err)
		}
		if end == "commit" { // as Distribution does once it has moved the blob
			if err := d.Delete(ctx, dir); err != nil {
				t.Fatal(err)
			}
		}
	}
	var left []string
	filepath.WalkDir(uploads, func(p string, e fs.DirEntry, err error) error {
		if p != uploads {
			left = append(left, strings.TrimPrefix(p, uploads))
		}
		return err
	})
	// The directories above every repository's stay, and what was there before.
	want := []string{"/docker", "/docker/registry", "/docker/registry/v2", "/docker/registry/v2/repositories", "/http-secret"}
	if !slices.Equal(left, want) {
		t.Errorf("left in the uploads directory: %q, want %q", left, want)
	}
}

// countingNode counts its Add calls and the bytes they read.
type countingNode struct {
	ipfs.Node
	mu    sync.Mutex
	adds  int
	added int64
}

func (n *countingNode) counts() (adds int, added int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.adds, n.added
}

func (n *countingNode) Add(ctx context.Context, f files.Node) (cid.Cid, error) {
	n.mu.Lock()
	n.adds++
	n.mu.Unlock()
	if file, ok := f.(files.File); ok {
		f = files.NewReaderFile(&countingReader{r: file, n: n})
	}
	return n.Node.Add(ctx, f)
}

type countingReader struct {
	r io.Reader
	n *countingNode
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.mu.Lock()
	c.n.added += int64(k)
	c.n.mu.Unlock()
	return k, err
}

// testUploadImportedOnce checks that an upload sent in parts, with the writer closed and
// reopened between them, is imported while it arrives: its full chunks are added before
// Commit, and every byte is added once.
func testUploadImportedOnce(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	n := &countingNode{Node: node}
	d, err := New(n, fmt.Sprintf("/once-%d", time.Now().UnixNano()), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := ipfstest.Content(3<<20+5, 11)
	var w storagedriver.FileWriter
	for i, part := range [][]byte{b[:1<<20+7], b[1<<20+7 : 2<<20], b[2<<20:]} {
		if w, err = d.Writer(ctx, "/u/data", i > 0); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(part); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			w.Close()
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, added := n.counts(); added == 3<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the full chunks were not added before Commit")
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if adds, added := n.counts(); adds != 4 || added != int64(len(b)) {
		t.Errorf("after Commit: %d adds read %d bytes, want 4 of %d in all", adds, added, len(b))
	}
	want, _ := node.Add(ctx, files.NewBytesFile(b))
	if e, err := node.Stat(ctx, d.StorageDriver.(*driver).mfs("/u/data")); err != nil || e.CID != want {
		t.Errorf("CID %v (%v), want %s", e.CID, err, want)
	}
}

// writeChunksFrom resumes the upload of b at p from off and commits it.
func writeChunksFrom(t *testing.T, d *Driver, p string, b []byte, off int) {
	t.Helper()
	ctx := context.Background()
	w, err := d.Writer(ctx, p, true)
	if err != nil {
		t.Fatal(err)
	}
	if w.Size() != int64(off) {
		t.Fatalf("resumed at %d, want %d", w.Size(), off)
	}
	if _, err := w.Write(b[off:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close()
}

// testSpoolCutShort reads a spool whose last save a crash cut short: the parts file has a
// part that the chunk file does not count yet.
func testSpoolCutShort(t *testing.T, node ipfs.Node) {
	ctx := context.Background()
	dir := t.TempDir()
	var lines string
	for i := range 2 {
		c, err := node.Add(ctx, files.NewBytesFile(ipfstest.Content(1<<20, uint64(i))))
		if err != nil {
			t.Fatal(err)
		}
		lines += c.String() + "\n"
	}
	chunk := append(binary.BigEndian.AppendUint64(nil, 1), "tail"...)
	if err := os.WriteFile(filepath.Join(dir, partsFile), []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, chunkFile), chunk, 0o600); err != nil {
		t.Fatal(err)
	}
	if parts, err := SpooledParts(filepath.Dir(dir)); err != nil || len(parts) != 2 {
		t.Errorf("SpooledParts: %v, %v; want the 2 parts written", parts, err)
	}
	s, fresh, err := openSpooled(dir, func(d string) error { return os.MkdirAll(d, 0o700) })
	if err != nil || fresh {
		t.Fatalf("openSpooled: fresh %v, %v", fresh, err)
	}
	if len(s.parts) != 1 || string(s.chunk) != "tail" || s.size() != 1<<20+4 {
		t.Errorf("read %d parts and chunk %q (size %d), want 1 part and %q", len(s.parts), s.chunk, s.size(), "tail")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, partsFile)); len(b) != len(lines)/2 {
		t.Errorf("parts file is %d bytes after reading, want %d", len(b), len(lines)/2)
	}
}
