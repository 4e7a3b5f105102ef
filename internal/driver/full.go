package driver

import (
	"context"
	"errors"
	"syscall"

	"github.com/discoregistry/disco/internal/ack"
)

// IsDiskFull reports whether err says that the disk has no room left: ENOSPC, or EDQUOT
// for a quota that is used up.
func IsDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// reportFull reports err to the edge of the request ctx belongs to when it says that the
// disk is full, and returns it. Distribution answers every failed write with 500 UNKNOWN,
// and some not at all; reported, the request is answered 507, saying the disk is full
// (see the server's durable handler).
func reportFull(ctx context.Context, err error) error {
	if IsDiskFull(err) {
		ack.Fail(ctx, err)
	}
	return err
}

// ReportFull is reportFull for the code that writes beside the driver: global addressing.
func ReportFull(ctx context.Context, err error) error { return reportFull(ctx, err) }
