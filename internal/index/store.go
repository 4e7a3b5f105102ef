package index

import (
	"slices"

	"github.com/opencontainers/go-digest"
)

// A manifest is in the index while something holds it: a tag, or an index manifest
// that is itself held. The last holder to go removes it, and its users entries.

// store puts the repository name, tagged tags, in the index, with the manifests
// described for it.
func (ix *Index) store(name string, tags []Tag, described map[digest.Digest]*Manifest) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old, known := ix.repos[name]
	cost := 0
	if !known {
		cost++
	}
	if known {
		cost += len(tags) - len(old.tags)
	} else {
		cost += len(tags)
	}
	var added []digest.Digest
	for d, m := range described {
		if _, ok := ix.manifests[d]; !ok {
			cost += 1 + len(m.Blobs) + len(m.Children)
			added = append(added, d)
		}
	}
	if ix.entries+cost > ix.opts.MaxEntries {
		if !ix.truncated {
			ix.log.Warn("index: full, leaving out repositories and manifests", "entries", ix.entries)
		}
		ix.truncated = true
		if !known {
			return
		}
		added = nil // keep the repository's tags up to date, without their manifests
	}
	for _, d := range added {
		m := described[d]
		ix.manifests[d] = &manifest{Manifest: *m}
		ix.entries += 1 + len(m.Blobs) + len(m.Children)
		for _, b := range m.Blobs {
			ix.users[b.Digest] = append(ix.users[b.Digest], d)
		}
		for _, c := range m.Children {
			ix.users[c] = append(ix.users[c], d)
		}
	}
	held := make([]bool, len(tags))
	for i, t := range tags {
		if m, ok := ix.manifests[t.Digest]; ok {
			tags[i].Digest = m.Digest // one copy of the string
			ix.hold(t.Digest)
			held[i] = true
		}
	}
	if known {
		ix.unhold(old)
		ix.entries += len(tags) - len(old.tags)
		old.tags, old.held = tags, held
	} else {
		r := &repo{name: name, kind: kindOf(name), tags: tags, held: held}
		ix.repos[name] = r
		i, _ := slices.BinarySearchFunc(ix.sorted, name, byName)
		ix.sorted = slices.Insert(ix.sorted, i, r)
		ix.entries += 1 + len(tags)
	}
	for _, d := range added {
		if m, ok := ix.manifests[d]; ok && m.holders == 0 {
			ix.remove(m)
		}
	}
}

// drop takes the repository name out of the index.
func (ix *Index) drop(name string) {
	ix.pushes.forget(name)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	delete(ix.cloned, name)
	r, ok := ix.repos[name]
	if !ok {
		return
	}
	ix.unhold(r)
	delete(ix.repos, name)
	if i, found := slices.BinarySearchFunc(ix.sorted, name, byName); found {
		ix.sorted = slices.Delete(ix.sorted, i, i+1)
	}
	ix.entries -= 1 + len(r.tags)
}

// unhold releases the manifests the tags of r hold.
func (ix *Index) unhold(r *repo) {
	for i, t := range r.tags {
		if r.held[i] {
			ix.release(t.Digest)
		}
	}
}

// hold counts one more holder of the manifest d: a tag, or an index listing it.
func (ix *Index) hold(d digest.Digest) {
	m, ok := ix.manifests[d]
	if !ok {
		return
	}
	if m.holders++; m.holders == 1 {
		for _, c := range m.Children {
			ix.hold(c)
		}
	}
}

// release counts one holder less of the manifest d, and removes it when none is left.
func (ix *Index) release(d digest.Digest) {
	m, ok := ix.manifests[d]
	if !ok {
		return
	}
	if m.holders--; m.holders == 0 {
		for _, c := range m.Children {
			ix.release(c)
		}
		ix.remove(m)
	}
}

func (ix *Index) remove(m *manifest) {
	delete(ix.manifests, m.Digest)
	ix.entries -= 1 + len(m.Blobs) + len(m.Children)
	unuse := func(d digest.Digest) {
		us := slices.DeleteFunc(ix.users[d], func(u digest.Digest) bool { return u == m.Digest })
		if len(us) == 0 {
			delete(ix.users, d)
		} else {
			ix.users[d] = us
		}
	}
	for _, b := range m.Blobs {
		unuse(b.Digest)
	}
	for _, c := range m.Children {
		unuse(c)
	}
}
