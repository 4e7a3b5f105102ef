package kubo

import (
	"errors"
	"strings"

	"github.com/discoregistry/disco/internal/ipfs"
)

// Error is an error the daemon answered a call with. It matches (errors.Is) the
// ipfs.Node error its message stands for, if any.
type Error struct {
	Message string
	kind    error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.kind }

// Kinds of errors that only this package's calls tell apart.
var (
	errExists  = errors.New("exists")          // something is at the path already
	errPastEnd = errors.New("offset past end") // files read at an offset past the end
	errNotFile = errors.New("not a file")      // files cp --force over a directory
	errLimit   = errors.New("unflushed limit") // Internal.MFSNoFlushLimit reached
	// errFlush: a flushing files cp (a hold's) put the node, then could not flush it,
	// which happens when another client's change flushed its directory meanwhile. Its
	// message says "file does not exist" too, which is not a missing path here.
	errFlush = errors.New("flush after cp failed")
)

// messages maps what the daemon's errors say to their kinds.
//
// Matching text is unavoidable here: Kubo's RPC API answers an error as its message and
// a code that is the same (cmds.ErrNormal) for all of these, so the causes the daemon
// had in hand (os.ErrNotExist, mfs.ErrDirExists, boxo's resolver errors, ipld.ErrNotFound)
// reach a client only as text. kubo's own client/rpc parses ipld.ErrNotFound the same
// way. The texts are those of Kubo v0.42.0 and boxo v0.40.0; the ipfstest suite pins
// down every case, so a change in a later Kubo fails the tests, not Disco.
var messages = []struct {
	text string
	kind error
}{
	{"cp: cannot flush the created file", errFlush},              // before "file does not exist", which it says too
	{"cp: cannot unlink existing file: not a file", errNotFile},  // files cp --force over a directory
	{"unflushed MFS operations", errLimit},                       // files cp --force has unlinked by then
	{"file does not exist", ipfs.ErrNotFound},                    // os.ErrNotExist, from MFS lookups
	{": Not a directory", ipfs.ErrNotFound},                      // an MFS lookup through a file
	{" is not a directory", ipfs.ErrNotFound},                    // files mv from below a file (boxo's lookupDir)
	{"expected *mfs.Directory, didn't get it", ipfs.ErrNotFound}, // files rm through a file
	{"no link named", ipfs.ErrNotFound},                          // resolving a path through a directory
	{"called on a bytes node", ipfs.ErrNotFound},                 // resolving a path through a raw block
	{"ipld: could not find", ipfs.ErrNotFound},                   // ipld.ErrNotFound: a block is missing
	{"blockstore: block not found", ipfs.ErrNotFound},            // blockstore.ErrNotFound
	{" was not a file", ipfs.ErrIsDir},                           // files read of a directory
	{"this dag node is a directory", ipfs.ErrIsDir},              // cat of a directory (unixfs io.ErrIsDir)
	{"directory already has entry by that name", errExists},      // mfs.ErrDirExists
	{"file already exists", errExists},                           // os.ErrExist: files mkdir -p over a file
	{"offset was past end of file", errPastEnd},
}

// daemonError returns the error the daemon answered with msg.
func daemonError(msg string) error {
	for _, m := range messages {
		if strings.Contains(msg, m.text) {
			return &Error{Message: msg, kind: m.kind}
		}
	}
	return &Error{Message: msg}
}
