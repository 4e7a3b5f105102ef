package kubo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ipfs/kubo/client/rpc"

	"github.com/discoregistry/disco/internal/ack"
)

// Limits on what is read of the daemon's answers into memory.
const (
	maxAnswer     = 64 << 20 // a JSON answer, such as the listing of a large directory
	maxLine       = 1 << 20  // one value of a streamed answer
	maxErrorBody  = 64 << 10 // the body of an error answer
	maxSmallReply = 1 << 20  // the answer of a command that says little
)

// errNoAnswer is the cause of a call cancelled because the daemon did not begin to answer
// within the node's timeout.
var errNoAnswer = errors.New("no answer from the daemon")

// send sends the request rb, of the command cmd, and returns the body of the answer, to be
// closed. A local command is one the daemon answers from MFS or its blockstore: it must
// begin to answer within n.timeout. Other commands may fetch from the network, and wait as
// long as ctx lets them.
//
// Sending goes through rpc's request builder but reads the answer itself: rpc's Exec
// decodes without a bound, and its Response.Close reads the rest of a body it closes,
// which for a file is the rest of the file.
func (n *Node) send(ctx context.Context, rb rpc.RequestBuilder, cmd string, local bool) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kubo %s: %w", cmd, err)
	}
	if err := n.health.check(); err != nil {
		ack.Unavailable(ctx, err)
		return nil, fmt.Errorf("kubo %s: %w", cmd, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	var timer *time.Timer
	if local {
		timer = time.AfterFunc(n.timeout, func() { cancel(fmt.Errorf("%w within %s", errNoAnswer, n.timeout)) })
	}
	res, err := rb.Send(ctx)
	if timer != nil {
		timer.Stop()
	}
	if err == nil && res.Error != nil {
		err = daemonError(res.Error.Message)
	}
	if err != nil {
		if unreachable(ctx, err) {
			err = n.health.fail(err)
			ack.Unavailable(ctx, err)
		}
		err = callError(ctx, cmd, err)
		cancel(nil)
		return nil, err
	}
	return &body{r: res.Output, ctx: ctx, cancel: cancel, cmd: cmd}, nil
}

// callError describes the failure of a call of cmd, with the reason its context ended if
// it did: the HTTP client's own error says less.
func callError(ctx context.Context, cmd string, err error) error {
	var de *Error
	if cause := context.Cause(ctx); cause != nil && !errors.As(err, &de) {
		return fmt.Errorf("kubo %s: %w", cmd, cause)
	}
	return fmt.Errorf("kubo %s: %w", cmd, err)
}

// body is the body of an answer. Closing it early drops the connection rather than read
// the rest.
type body struct {
	r      io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	cmd    string
}

func (b *body) Read(p []byte) (int, error) {
	k, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		// rpc reports an error the daemon met after it began to answer (the
		// X-Stream-Error trailer) as a plain error with its message.
		if ctxErr := context.Cause(b.ctx); ctxErr != nil {
			err = ctxErr
		} else {
			err = daemonError(err.Error())
		}
		err = fmt.Errorf("kubo %s: %w", b.cmd, err)
	}
	return k, err
}

func (b *body) Close() error {
	b.cancel(nil)
	return b.r.Close()
}

// call sends rb and reads its answer to the end, for commands that answer nothing of use.
func (n *Node) call(ctx context.Context, rb rpc.RequestBuilder, cmd string, local bool) error {
	r, err := n.send(ctx, rb, cmd, local)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(r, maxSmallReply))
	return err
}

// decode sends rb and decodes its answer, one JSON value, into v.
func (n *Node) decode(ctx context.Context, rb rpc.RequestBuilder, cmd string, local bool, v any) error {
	r, err := n.send(ctx, rb, cmd, local)
	if err != nil {
		return err
	}
	defer r.Close()
	lr := &io.LimitedReader{R: r, N: maxAnswer}
	if err := json.NewDecoder(lr).Decode(v); err != nil {
		if lr.N == 0 {
			return fmt.Errorf("kubo %s: answer larger than %d bytes", cmd, maxAnswer)
		}
		return fmt.Errorf("kubo %s: %w", cmd, err)
	}
	return nil
}

// stream sends rb and calls f with each value of its answer, a stream of JSON values one
// a line.
func (n *Node) stream(ctx context.Context, rb rpc.RequestBuilder, cmd string, local bool, f func(line []byte) error) error {
	r, err := n.send(ctx, rb, cmd, local)
	if err != nil {
		return err
	}
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for sc.Scan() {
		if err := f(sc.Bytes()); err != nil {
			return fmt.Errorf("kubo %s: %w", cmd, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("kubo %s: a line of the answer is longer than %d bytes", cmd, maxLine)
		}
		return err // from body.Read, described already
	}
	return nil
}

// boundErrors limits the bodies of error answers, which rpc reads whole.
type boundErrors struct{ rt http.RoundTripper }

func (b boundErrors) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := b.rt
	if rt == nil {
		rt = http.DefaultTransport
	}
	res, err := rt.RoundTrip(req)
	if err == nil && res.StatusCode >= http.StatusBadRequest {
		res.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(res.Body, maxErrorBody), res.Body}
	}
	return res, err
}
