package global

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/driver"
	"github.com/discoregistry/disco/internal/ipfs/embedded"
)

// slowLink holds every Link until released.
type slowLink struct {
	driver.Store
	release chan struct{}
}

func (s slowLink) Link(ctx context.Context, p string, c cid.Cid) error {
	<-s.release
	return s.Store.Link(ctx, p, c)
}

// wrapped is a response writer as the registry's middleware wraps it: writes go through
// the server's buffer, not straight to the connection.
type wrapped struct{ http.ResponseWriter }

func (w wrapped) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestStreamEndsBeforeLink streams a blob and holds its linking: the client gets the
// whole blob all the same, since linking it (reading it again, syncing the disk) is not
// the client's wait.
func TestStreamEndsBeforeLink(t *testing.T) {
	ctx := context.Background()
	node, err := embedded.Open(ctx, embedded.Options{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	plain, err := driver.New(node, "/", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := slowLink{Store: plain, release: make(chan struct{})}
	g, err := New(Options{Node: node, Store: store, CloneTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 3<<20+17)
	rand.Read(blob)
	c, err := node.Add(ctx, files.NewBytesFile(blob))
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(blob)
	linked := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(linked)
		g.stream(r.Context(), wrapped{w}, "bafytest", d, c, int64(len(blob)))
	}))
	t.Cleanup(srv.Close)
	defer close(store.release)

	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, resp.ContentLength))
	if err != nil {
		t.Fatalf("reading the blob while its link waits: %v", err)
	}
	if !bytes.Equal(got, blob) {
		t.Fatalf("got %d bytes, not the blob's %d", len(got), len(blob))
	}
	select {
	case <-linked:
		t.Fatal("the handler returned before the link it waits for")
	default:
	}
}
