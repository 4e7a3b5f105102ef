package ipfstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Restart checks that what n linked, replaced, moved and removed before a Flush is so
// after n stops and starts again. restart stops n, as harshly as it can (killing its
// process, where it has one of its own), starts it on the same repository and returns
// the node to use from then on.
func Restart(t *testing.T, n ipfs.Node, restart func(*testing.T) ipfs.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := "/ipfstest-restart"
	a, b := add(t, ctx, n, []byte("a")), add(t, ctx, n, []byte("b"))
	for _, step := range []struct {
		what string
		f    func() error
	}{
		{"Link", func() error { return n.Link(ctx, dir+"/kept/a", a) }},
		{"Link", func() error { return n.Link(ctx, dir+"/over", a) }},
		{"Link over", func() error { return n.Link(ctx, dir+"/over", b) }},
		{"Link", func() error { return n.Link(ctx, dir+"/gone", a) }},
		{"Remove", func() error { return n.Remove(ctx, dir+"/gone") }},
		{"Link", func() error { return n.Link(ctx, dir+"/from", b) }},
		{"Move", func() error { return n.Move(ctx, dir+"/from", dir+"/to") }},
		{"Flush", func() error { return n.Flush(ctx) }},
	} {
		if err := step.f(); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
	}
	n = restart(t)
	for p, want := range map[string]string{"/kept/a": "a", "/over": "b", "/to": "b", "/gone": "", "/from": ""} {
		got, err := ipfs.ReadFile(ctx, n, dir+p, 10)
		switch {
		case want == "" && !errors.Is(err, ipfs.ErrNotFound):
			t.Errorf("%s after restart: %q, %v; want it gone", p, got, err)
		case want != "" && string(got) != want:
			t.Errorf("%s after restart: %q, %v; want %q", p, got, err, want)
		}
	}
}
