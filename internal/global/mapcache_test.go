package global

import (
	"fmt"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"
)

func blobMapOf(n int) map[digest.Digest]cid.Cid {
	m := make(map[digest.Digest]cid.Cid, n)
	for i := range n {
		m[digest.FromString(fmt.Sprint(i))] = cid.Undef
	}
	return m
}

// TestMapCacheBounded fills the cache of disco.json maps past its bound, counted in
// entries: the oldest go, and one map larger than the bound is not kept.
func TestMapCacheBounded(t *testing.T) {
	c, err := newMapCache(1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		c.Add(fmt.Sprint(i), blobMapOf(100))
		if c.entries > 1000 {
			t.Fatalf("after %d maps of 100 entries the cache holds %d entries, bound 1000", i+1, c.entries)
		}
	}
	if _, ok := c.Get("0"); ok {
		t.Error("the oldest map is still held")
	}
	if _, ok := c.Get("29"); !ok {
		t.Error("the newest map is gone")
	}
	c.Add("huge", blobMapOf(1001))
	if _, ok := c.Get("huge"); ok || c.entries > 1000 {
		t.Errorf("a map larger than the bound: held %v, %d entries", ok, c.entries)
	}
}
