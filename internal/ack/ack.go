// Package ack lets code deep below a request report to the request's edge before the
// request is acknowledged: failures its caller drops, and work to do once the request's
// handlers are done. Distribution, for one, answers a PATCH 202 whatever closing the
// upload's writer returned, and leaves the writer open when it refuses a PATCH for its
// offset; an upload whose state could not be saved must not be acknowledged, and one
// whose writer was left open must take the client's next request.
package ack

import (
	"context"
	"errors"
	"sync"
)

type key struct{}

// Scope is what a request's handlers reported.
type Scope struct {
	mu          sync.Mutex
	errs        []error
	ends        []func()
	unavailable error
}

// Track returns a context whose Fail, AtEnd and Unavailable calls s gathers: a new scope,
// or the one ctx is tracked by already.
func Track(ctx context.Context) (context.Context, *Scope) {
	if s, ok := ctx.Value(key{}).(*Scope); ok {
		return ctx, s
	}
	s := &Scope{}
	return context.WithValue(ctx, key{}, s), s
}

// Unavailable records that the request ctx belongs to met a part of the storage that
// cannot be reached: its edge answers an error with 503 rather than 500.
func Unavailable(ctx context.Context, err error) {
	if s, ok := ctx.Value(key{}).(*Scope); ok && err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.unavailable = err
	}
}

// Unavailable returns what Unavailable recorded, if anything.
func (s *Scope) Unavailable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unavailable
}

// End runs what AtEnd registered, then returns the failures, joined.
func (s *Scope) End() error {
	s.mu.Lock()
	ends := s.ends
	s.ends = nil
	s.mu.Unlock()
	for _, f := range ends {
		f()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Fail records err in the request ctx belongs to, if it is tracked: the request is not
// acknowledged.
func Fail(ctx context.Context, err error) {
	if s, ok := ctx.Value(key{}).(*Scope); ok && err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.errs = append(s.errs, err)
	}
}

// AtEnd has f run once the handlers of the request ctx belongs to are done, before it is
// answered; f may call Fail. It reports whether the request is tracked.
func AtEnd(ctx context.Context, f func()) bool {
	s, ok := ctx.Value(key{}).(*Scope)
	if ok {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.ends = append(s.ends, f)
	}
	return ok
}
