package embedded

import (
	"fmt"
	"syscall"
)

// minFree is the room a checkpoint leaves on the repository's disk. A checkpoint records
// the MFS root in Kubo's leveldb datastore, and goleveldb fails every write after one
// that failed for want of room, until the datastore is opened again: a checkpoint that
// ran the disk full would leave the node unable to checkpoint, however much space is
// freed later, until Disco restarts. So a checkpoint does not start on a disk with less
// room than this; requests are refused instead (with 507, once the journal is full), and
// checkpoints go on by themselves once space is freed. The root record takes a few
// bytes; the directories written before it, a few blocks.
const minFree = 1 << 20

// checkRoom fails, with an error that matches syscall.ENOSPC, when the disk of the
// repository has less than minFree bytes free. A disk it cannot look at passes.
func (n *Node) checkRoom() error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.path, &st); err != nil {
		return nil
	}
	if free := int64(st.Bavail) * st.Bsize; free < minFree {
		return fmt.Errorf("%d bytes free on the disk of %s, less than the %d a checkpoint leaves: %w",
			free, n.path, minFree, syscall.ENOSPC)
	}
	return nil
}
