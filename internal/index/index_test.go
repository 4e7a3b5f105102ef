package index_test

import (
	"context"
	"crypto/rand"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	"github.com/opencontainers/go-digest"

	"github.com/discoregistry/disco/internal/index"
	"github.com/discoregistry/disco/internal/index/indextest"
)

func randomImage(t testing.TB, layers ...ggcr.Layer) ggcr.Image {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		t.Fatal(err)
	}
	return img
}

func randomLayer(t testing.TB) ggcr.Layer {
	t.Helper()
	l, err := random.Layer(64, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func randomCID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	mh, err := multihash.Sum(b, multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.DagProtobuf, mh).String()
}

func dig(t testing.TB, x interface{ Digest() (ggcr.Hash, error) }) digest.Digest {
	t.Helper()
	h, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

func configDigest(t testing.TB, img ggcr.Image) digest.Digest {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

// tags renders a repository's tags as "tag=digest-prefix" for messages and comparisons.
func tagList(r index.Repository) []string {
	var out []string
	for _, t := range r.Tags {
		out = append(out, t.Name+"="+t.Digest.Encoded()[:8])
	}
	return out
}

func names(repos []index.Repository) []string {
	var out []string
	for _, r := range repos {
		out = append(out, r.Name)
	}
	return out
}

func uses(us []index.Use) []string {
	var out []string
	for _, u := range us {
		s := u.Repository + ":" + u.Tag + "@" + u.Manifest.Encoded()[:8]
		for _, v := range u.Via {
			s += " via " + v.Encoded()[:8]
		}
		out = append(out, s)
	}
	return out
}

func short(d digest.Digest) string { return d.Encoded()[:8] }

// TestIndexFollowsChanges makes changes through the index's middleware, as Distribution's
// handlers do, and checks what the index then says.
func TestIndexFollowsChanges(t *testing.T) {
	t.Parallel()
	shared := randomLayer(t)
	one, two := randomImage(t, shared), randomImage(t, shared)
	layerOfOne := func(t *testing.T) digest.Digest {
		ls, _ := one.Layers()
		return dig(t, ls[0])
	}
	platformIndex := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: one, Descriptor: ggcr.Descriptor{Platform: &ggcr.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: two, Descriptor: ggcr.Descriptor{Platform: &ggcr.Platform{OS: "linux", Architecture: "arm64"}}})

	for _, tc := range []struct {
		name  string
		check func(t *testing.T, r *indextest.Registry)
	}{
		{"a pushed tag", func(t *testing.T, r *indextest.Registry) {
			before := time.Now()
			d := r.Push(t, "team/app", "v1", one)
			r.Sync(t)
			repo, ok := r.Index.Repository("team/app")
			if !ok || !slices.Equal(tagList(repo), []string{"v1=" + short(d)}) {
				t.Errorf("team/app: %v %v, want v1=%s", ok, tagList(repo), short(d))
			}
			if repo.Pushed.Before(before) || repo.Pushed.After(time.Now()) {
				t.Errorf("team/app pushed at %v, want between %v and now", repo.Pushed, before)
			}
			want := []string{"team/app:v1@" + short(d)}
			for what, x := range map[string]digest.Digest{"manifest": d, "config": configDigest(t, one), "layer": layerOfOne(t)} {
				if got, _ := r.Index.Uses(x); !slices.Equal(uses(got), want) {
					t.Errorf("uses of the %s: %q, want %q", what, uses(got), want)
				}
			}
			m, ok := r.Index.Manifest(d)
			if !ok || m.Kind != index.KindImage || len(m.Blobs) != 3 || m.Size <= 0 {
				t.Errorf("manifest %s: %+v, want an image of a config and two layers", d, m)
			}
		}},
		{"a tag moved to another image", func(t *testing.T, r *indextest.Registry) {
			d1 := r.Push(t, "app", "v1", one)
			d2 := r.Push(t, "app", "v1", randomImage(t))
			r.Sync(t)
			if repo, _ := r.Index.Repository("app"); !slices.Equal(tagList(repo), []string{"v1=" + short(d2)}) {
				t.Errorf("app: %v, want v1=%s", tagList(repo), short(d2))
			}
			if got, _ := r.Index.Uses(layerOfOne(t)); len(got) != 0 {
				t.Errorf("uses of a layer no tag names any more: %q, want none", uses(got))
			}
			if _, ok := r.Index.Manifest(d1); ok {
				t.Errorf("the index still describes %s, which no tag names", d1)
			}
		}},
		{"a tag removed", func(t *testing.T, r *indextest.Registry) {
			d := r.Push(t, "app", "v1", one)
			r.Tag(t, "app", "v2", d)
			if err := r.Repo(t, "app").Tags(context.Background()).Untag(context.Background(), "v1"); err != nil {
				t.Fatal(err)
			}
			r.Sync(t)
			if got, _ := r.Index.Uses(d); !slices.Equal(uses(got), []string{"app:v2@" + short(d)}) {
				t.Errorf("uses: %q, want app:v2 only", uses(got))
			}
		}},
		{"a manifest deleted", func(t *testing.T, r *indextest.Registry) {
			d := r.Push(t, "app", "v1", one)
			r.Push(t, "other", "v1", two)
			ms, err := r.Repo(t, "app").Manifests(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := ms.Delete(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			// Distribution's handler untags what pointed at the manifest.
			if err := r.Repo(t, "app").Tags(context.Background()).Untag(context.Background(), "v1"); err != nil {
				t.Fatal(err)
			}
			r.Sync(t)
			repo, ok := r.Index.Repository("app")
			if !ok || len(repo.Tags) != 0 {
				t.Errorf("app: %v %v, want it there (its _manifests is) with no tags", ok, tagList(repo))
			}
			if got, _ := r.Index.Uses(dig(t, shared)); len(got) != 1 || got[0].Repository != "other" {
				t.Errorf("uses of the shared layer: %q, want other:v1 only", uses(got))
			}
		}},
		{"an index of platforms", func(t *testing.T, r *indextest.Registry) {
			d := r.PushIndex(t, "multi", "v1", platformIndex)
			r.Sync(t)
			d1, d2 := dig(t, one), dig(t, two)
			via := []digest.Digest{d1, d2}
			slices.Sort(via)
			want := "multi:v1@" + short(d) + " via " + short(via[0]) + " via " + short(via[1])
			if got, _ := r.Index.Uses(dig(t, shared)); !slices.Equal(uses(got), []string{want}) {
				t.Errorf("uses of the layer both platforms share: %q, want %q", uses(got), want)
			}
			want = "multi:v1@" + short(d) + " via " + short(d1)
			if got, _ := r.Index.Uses(d1); !slices.Equal(uses(got), []string{want}) {
				t.Errorf("uses of a platform's manifest: %q, want %q", uses(got), want)
			}
			m, ok := r.Index.Manifest(d)
			m1, _ := r.Index.Manifest(d1)
			m2, _ := r.Index.Manifest(d2)
			sharedSize, _ := shared.Size()
			if !ok || m.Kind != index.KindIndex || len(m.Children) != 2 || m.Size != m1.Size+m2.Size-sharedSize {
				t.Errorf("index %s: %+v, want an index of 2 manifests of %d bytes in all", d, m, m1.Size+m2.Size-sharedSize)
			}
		}},
		{"names as the catalog orders them", func(t *testing.T, r *indextest.Registry) {
			for _, name := range []string{"a-b", "a/c/d", "a/b", "b"} {
				r.Push(t, name, "v1", one)
			}
			r.Sync(t)
			got, more := r.Index.Repositories(index.Query{})
			if want := []string{"a/b", "a/c/d", "a-b", "b"}; !slices.Equal(names(got), want) || more {
				t.Errorf("repositories: %q (more: %v), want %q", names(got), more, want)
			}
		}},
		{"pages, and names that match", func(t *testing.T, r *indextest.Registry) {
			for _, name := range []string{"r1", "r2", "team/r3", "team/r4", "r5"} {
				r.Push(t, name, "v1", one)
			}
			r.Sync(t)
			var pages [][]string
			q := index.Query{Limit: 2}
			for {
				page, more := r.Index.Repositories(q)
				pages = append(pages, names(page))
				if !more {
					break
				}
				q.After = page[len(page)-1].Name
			}
			if want := [][]string{{"r1", "r2"}, {"r5", "team/r3"}, {"team/r4"}}; !slices.EqualFunc(pages, want, slices.Equal) {
				t.Errorf("pages of 2: %q, want %q", pages, want)
			}
			if got, _ := r.Index.Repositories(index.Query{Match: "team/"}); !slices.Equal(names(got), []string{"team/r3", "team/r4"}) {
				t.Errorf("names matching team/: %q", names(got))
			}
		}},
		{"the names global addressing gives", func(t *testing.T, r *indextest.Registry) {
			// As global files a pushed image: under its digest, tagged latest and with its
			// CID, and under its CID. Another CID repository stands for one cloned.
			d := r.Push(t, "app", "v1", one)
			c := randomCID(t)
			r.Push(t, d.Encoded(), "latest", one)
			r.Tag(t, d.Encoded(), c, d)
			r.Push(t, c, "latest", one)
			cloned := randomCID(t)
			r.Push(t, cloned, "latest", two)
			r.Sync(t)
			if got, _ := r.Index.Repositories(index.Query{}); !slices.Equal(names(got), []string{"app", cloned}) {
				t.Errorf("repositories: %q, want app and the cloned %s", names(got), cloned)
			}
			got, _ := r.Index.Repositories(index.Query{Global: true})
			want := []string{d.Encoded(), "app", c, cloned}
			slices.Sort(want)
			if !slices.Equal(names(got), want) {
				t.Errorf("repositories with the global names: %q, want %q", names(got), want)
			}
		}},
		{"the memory bound", func(t *testing.T, r *indextest.Registry) {
			for i := range 20 {
				r.Push(t, "app"+string(rune('a'+i)), "v1", randomImage(t))
			}
			r.Sync(t)
			st := r.Index.Status()
			if !st.Truncated || st.Entries > 40 || st.Repositories == 0 {
				t.Errorf("status with at most 40 entries: %+v, want truncated at 40 entries", st)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := index.Options{StateDir: t.TempDir()}
			if strings.Contains(tc.name, "bound") {
				o.MaxEntries = 40
			}
			tc.check(t, indextest.New(t, o, nil))
		})
	}
}

// TestIndexBuild starts an index over a registry that holds images already, and checks
// it takes them in, with the push times a previous index recorded.
func TestIndexBuild(t *testing.T) {
	t.Parallel()
	driver := inmemory.New()
	state := t.TempDir()
	first := indextest.New(t, index.Options{StateDir: state}, driver)
	d := first.Push(t, "team/app", "v1", randomImage(t))
	first.Sync(t)
	pushed, _ := first.Index.Repository("team/app")

	// Written behind the index's back: it learns of these by reading the registry.
	ns, err := storage.NewRegistry(context.Background(), driver)
	if err != nil {
		t.Fatal(err)
	}
	plain := &indextest.Registry{NS: ns}
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: randomImage(t)})
	di := plain.PushIndex(t, "multi", "v1", idx)
	for i := range 50 {
		plain.Push(t, "many/r"+string(rune('a'+i%26))+string(rune('a'+i/26)), "latest", randomImage(t))
	}

	second := indextest.New(t, index.Options{StateDir: state}, driver)
	deadline := time.Now().Add(time.Minute)
	for !second.Index.Status().Ready {
		if time.Now().After(deadline) {
			t.Fatalf("index not ready after a minute: %+v", second.Index.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := second.Index.Status(); st.Repositories != 52 || st.Truncated {
		t.Errorf("built index: %+v, want 52 repositories", st)
	}
	repo, ok := second.Index.Repository("team/app")
	if !ok || !slices.Equal(tagList(repo), []string{"v1=" + short(d)}) {
		t.Errorf("team/app: %v %v, want v1=%s", ok, tagList(repo), short(d))
	}
	if !repo.Pushed.Equal(pushed.Pushed) || repo.Pushed.IsZero() {
		t.Errorf("team/app pushed at %v after a restart, want %v as recorded before", repo.Pushed, pushed.Pushed)
	}
	if m, ok := second.Index.Manifest(di); !ok || m.Kind != index.KindIndex {
		t.Errorf("multi:v1 %s: %+v, want an index", di, m)
	}
	if repo, _ := second.Index.Repository("multi"); !repo.Pushed.IsZero() {
		t.Errorf("multi, pushed while no index ran, has push time %v, want none", repo.Pushed)
	}
}

// TestIndexBuildFromSnapshot builds the index from a snapshot older than the live
// registry: what is only in the snapshot is taken in, and a repository pushed to while
// the build began keeps what the push made of it.
func TestIndexBuildFromSnapshot(t *testing.T) {
	t.Parallel()
	old, snap := snapshotRegistry(t)
	snap.Push(t, "app", "v1", randomImage(t))
	snap.Push(t, "only/in/snapshot", "v1", randomImage(t))

	started, pushed := make(chan struct{}), make(chan struct{})
	r := indextest.New(t, index.Options{Snapshot: func(context.Context) (storagedriver.StorageDriver, error) {
		close(started)
		<-pushed
		return old, nil
	}}, nil)
	<-started
	d := r.Push(t, "app", "v1", randomImage(t))
	close(pushed)
	waitReady(t, r)
	if repo, _ := r.Index.Repository("app"); !slices.Equal(tagList(repo), []string{"v1=" + short(d)}) {
		t.Errorf("app: %v, want v1=%s as pushed while the build began, not as in the snapshot", tagList(repo), short(d))
	}
	if _, ok := r.Index.Repository("only/in/snapshot"); !ok {
		t.Error("the index lacks a repository of the snapshot")
	}
}

// TestIndexLetsGoOfSnapshot checks that the build, once done, keeps nothing of the
// snapshot it read: on a large registry, its caches hold tens of MiB.
func TestIndexLetsGoOfSnapshot(t *testing.T) {
	t.Parallel()
	old, snap := snapshotRegistry(t)
	for _, name := range []string{"a", "b", "c"} {
		snap.Push(t, name, "v1", randomImage(t))
	}
	released := make(chan struct{})
	r := indextest.New(t, index.Options{Snapshot: func(context.Context) (storagedriver.StorageDriver, error) {
		d := &snapshotDriver{StorageDriver: old}
		runtime.AddCleanup(d, func(c chan struct{}) { close(c) }, released)
		return d, nil
	}}, nil)
	waitReady(t, r)
	if st := r.Index.Status(); st.Repositories != 3 {
		t.Fatalf("built index: %+v, want 3 repositories", st)
	}
	for range 50 {
		runtime.GC()
		select {
		case <-released:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Error("the snapshot the index was built from is still referenced once the build is done")
}

// snapshotDriver is a driver of its own, so that when it is collected says when the
// index let go of it.
type snapshotDriver struct{ storagedriver.StorageDriver }

// snapshotRegistry returns an in-memory driver, to be handed to an index as its
// snapshot, and a registry over it to push to.
func snapshotRegistry(t *testing.T) (storagedriver.StorageDriver, *indextest.Registry) {
	t.Helper()
	d := inmemory.New()
	ns, err := storage.NewRegistry(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	return d, &indextest.Registry{NS: ns}
}

// waitReady waits up to a minute for r's index to be built.
func waitReady(t *testing.T, r *indextest.Registry) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !r.Index.Status().Ready; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("index not ready after a minute: %+v", r.Index.Status())
		}
	}
}
