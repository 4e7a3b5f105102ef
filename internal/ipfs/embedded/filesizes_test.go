package embedded

import (
	"fmt"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// TestFileSizesStayBounded remembers more sizes than fileSizes holds: it holds
// maxFileSizes, the last one among them.
func TestFileSizesStayBounded(t *testing.T) {
	var s fileSizes
	var last cid.Cid
	for i := range maxFileSizes + 100 {
		h, err := mh.Sum([]byte(fmt.Sprint(i)), mh.SHA2_256, -1)
		if err != nil {
			t.Fatal(err)
		}
		last = cid.NewCidV1(cid.Raw, h)
		s.remember(last, int64(i))
	}
	if len(s) != maxFileSizes {
		t.Errorf("fileSizes holds %d, want %d", len(s), maxFileSizes)
	}
	if size, ok := s[last]; !ok || size != maxFileSizes+99 {
		t.Errorf("the last size remembered: %d, %v", size, ok)
	}
}
