package kubo

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/discoregistry/disco/internal/ipfs"
)

// downFor is how long a daemon found unreachable is taken for down: calls fail at once
// with ipfs.ErrUnavailable, then the next call tries it again.
const downFor = 2 * time.Second

// health remembers a daemon found unreachable, so that calls do not each wait to find
// it out again.
type health struct {
	mu    sync.Mutex
	until time.Time
	cause error
}

// check returns an error matching ipfs.ErrUnavailable while the daemon is taken for down.
func (h *health) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Now().Before(h.until) {
		return fmt.Errorf("%w: %w", ipfs.ErrUnavailable, h.cause)
	}
	return nil
}

// fail takes the daemon for down, for err, and returns an error that says so.
func (h *health) fail(err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.until, h.cause = time.Now().Add(downFor), err
	return fmt.Errorf("%w: %w", ipfs.ErrUnavailable, err)
}

// unreachable reports an error of a call that did not reach the daemon, or that the
// daemon did not answer in time, rather than one the daemon answered.
func unreachable(ctx context.Context, err error) bool {
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), errNoAnswer) {
		return false // the caller gave up
	}
	var uerr *url.Error
	return errors.As(err, &uerr) || errors.Is(context.Cause(ctx), errNoAnswer)
}
