package global

import (
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"
)

// maxCachedBlobs bounds the entries of all the disco.json maps held in memory together,
// about 200 bytes each: a disco.json from the network may list tens of thousands.
const maxCachedBlobs = 100_000

// mapCache holds the digest-to-CID maps of CID repositories, by repository name, the
// least recently used dropped first once they hold more than max entries together.
type mapCache struct {
	max     int
	mu      sync.Mutex
	entries int
	lru     *lru.Cache[string, map[digest.Digest]cid.Cid]
}

func newMapCache(max int) (*mapCache, error) {
	c := &mapCache{max: max}
	l, err := lru.NewWithEvict(1<<20, func(_ string, m map[digest.Digest]cid.Cid) { c.entries -= len(m) })
	c.lru = l
	return c, err
}

func (c *mapCache) Get(name string) (map[digest.Digest]cid.Cid, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Get(name)
}

// Add keeps m, unless it alone is larger than the cache.
func (c *mapCache) Add(name string, m map[digest.Digest]cid.Cid) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(name)
	if len(m) > c.max {
		return
	}
	c.lru.Add(name, m)
	c.entries += len(m)
	for c.entries > c.max {
		c.lru.RemoveOldest()
	}
}

func (c *mapCache) Remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(name)
}
