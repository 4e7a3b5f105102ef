package embedded

import "github.com/ipfs/go-cid"

// fileSizes remembers the sizes of the files described, by CID. The size of a raw block
// is asked of the blockstore, and a link to a dag-pb node does not tell a file from a
// directory, so describing a file the tree does not hold costs a read. A walk of the
// catalog describes the disco.json of every digest and CID repository, in directories the
// tree does not keep (see names): without fileSizes, each walk read each of those files.
// What a CID is never changes, so what is remembered stays true (though the block may
// since have been collected: the file's reader will find that out); fileSizes holds at
// most maxFileSizes, forgets one at random for each new one once full, and is let go of
// when the node idles.
type fileSizes map[cid.Cid]int64

// maxFileSizes bounds fileSizes: 2 MiB of map when full (measured), and the CIDs' 36
// bytes each; more than the 20,000 digest and CID repositories of 10,000 images.
const maxFileSizes = 1 << 15

// remember records that c is a file of size bytes.
func (s *fileSizes) remember(c cid.Cid, size int64) {
	if *s == nil {
		*s = make(fileSizes)
	}
	if len(*s) >= maxFileSizes {
		for old := range *s { // where a range over a map starts is random
			delete(*s, old)
			break
		}
	}
	(*s)[c] = size
}
