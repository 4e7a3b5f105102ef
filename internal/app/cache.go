package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	// The storage drivers a secondary cache can be.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/azure"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/gcs"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/discoregistry/disco/internal/cache"
	"github.com/discoregistry/disco/internal/config"
	"github.com/discoregistry/disco/internal/driver"
)

// cacheDriver builds the storage driver storage.ipfs.cache names, or returns nil when
// there is none.
func cacheDriver(ctx context.Context, c *config.Config) (storagedriver.StorageDriver, error) {
	for name, params := range c.IPFS.Cache { // one, as config checked
		p, _ := params.(map[string]any)
		d, err := factory.Create(ctx, name, p)
		if err != nil {
			return nil, fmt.Errorf("storage.ipfs.cache.%s: %w", name, err)
		}
		return d, nil
	}
	return nil, nil
}

// withCache wraps store in the secondary cache c configures, if any.
func withCache(ctx context.Context, c *config.Config, store driver.Store, log *slog.Logger) (driver.Store, error) {
	d, err := cacheDriver(ctx, c)
	if err != nil || d == nil {
		return store, err
	}
	return cache.New(ctx, store, d, c.IPFS.Redirect, log)
}
