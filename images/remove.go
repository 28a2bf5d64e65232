package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// RemoveResult says what Remove did.
type RemoveResult struct {
	// Untagged lists the names removed.
	Untagged []string
	// Deleted lists the IDs of images no longer in the store.
	Deleted []digest.Digest
	// Freed is the number of bytes of blobs and layer data deleted.
	Freed int64
}

// Remove deletes images by name or ID. A name removes that name only (the image stays
// while other names point at it); an ID removes every name of the image. An image the
// InUse hook reports as used is refused with a FailedPrecondition error unless force is
// set; forced, it is untagged but kept as a dangling image so its container keeps its
// layers. Blobs and unpacked layers no longer referenced by any image are then deleted.
// Nothing is removed when any argument fails.
func (s *Store) Remove(ctx context.Context, refs []string, force bool) (*RemoveResult, error) {
	unlockGC, err := s.lock("images.lock", unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer unlockGC()
	imgs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	type target struct {
		img    *Image
		byName bool
	}
	var targets []target
	for _, a := range refs {
		m := matchImages(imgs, a)
		if len(m) == 0 {
			return nil, fmt.Errorf("image %q: %w", a, errdefs.ErrNotFound)
		}
		if len(m) > 1 {
			return nil, fmt.Errorf("image %q matches %d images: %w", a, len(m), errdefs.ErrInvalidArgument)
		}
		norm, _ := NormalizeName(a)
		targets = append(targets, target{img: m[0], byName: m[0].Name != "" && m[0].Name == norm})
	}
	res := &RemoveResult{}
	removeNames := map[string]bool{}
	removeIDs := map[digest.Digest]bool{}
	keepDangling := map[digest.Digest]bool{}
	for _, t := range targets {
		names := []string{}
		if t.byName {
			names = append(names, t.img.Name)
		} else {
			for _, i := range imgs {
				if i.ID == t.img.ID && i.Name != "" {
					names = append(names, i.Name)
				}
			}
		}
		lastName := true
		for _, i := range imgs {
			if i.ID == t.img.ID && i.Name != "" && !slices.Contains(names, i.Name) && !removeNames[i.Name] {
				lastName = false
			}
		}
		if lastName {
			used := false
			if s.inUse != nil {
				if used, err = s.inUse(ctx, t.img.ID.String()); err != nil {
					return nil, fmt.Errorf("check users of image %s: %w", t.img.ShortID(), err)
				}
			}
			if used && !force {
				return nil, fmt.Errorf("image %s (%s) is used by a container, use --force: %w", displayName(t.img), t.img.ShortID(), errdefs.ErrFailedPrecondition)
			}
			if used {
				keepDangling[t.img.ID] = true
			} else {
				removeIDs[t.img.ID] = true
			}
		}
		for _, n := range names {
			removeNames[n] = true
		}
	}
	err = s.updateIndex(func(idx *ocispec.Index) error {
		var kept []ocispec.Descriptor
		for _, d := range idx.Manifests {
			img := imageByDigest(imgs, d)
			name := d.Annotations[AnnotationRefName]
			if img != nil && removeIDs[img.ID] {
				continue
			}
			if removeNames[name] {
				if img == nil || !keepDangling[img.ID] {
					continue
				}
				d.Annotations = nil // forced: keep as <none> for its container
			}
			kept = append(kept, d)
		}
		idx.Manifests = kept
		return nil
	})
	if err != nil {
		return nil, err
	}
	for n := range removeNames {
		res.Untagged = append(res.Untagged, n)
	}
	slices.Sort(res.Untagged)
	for id := range removeIDs {
		res.Deleted = append(res.Deleted, id)
	}
	freed, err := s.gcLocked(ctx)
	res.Freed = freed
	return res, err
}

func displayName(img *Image) string {
	if img.Name == "" {
		return "<none>"
	}
	return img.Name
}

func imageByDigest(imgs []*Image, d ocispec.Descriptor) *Image {
	for _, i := range imgs {
		if i.Descriptor.Digest == d.Digest {
			return i
		}
	}
	return nil
}

// GC deletes blobs and unpacked layers that no image references, and leftovers of
// interrupted pulls. It waits for running pulls to finish. It returns the bytes freed.
func (s *Store) GC(ctx context.Context) (int64, error) {
	unlock, err := s.lock("images.lock", unix.LOCK_EX)
	if err != nil {
		return 0, err
	}
	defer unlock()
	return s.gcLocked(ctx)
}

// gcLocked is GC without taking the lock.
// Preconditions: the caller holds images.lock exclusively, so no pull is running.
func (s *Store) gcLocked(ctx context.Context) (int64, error) {
	idx, err := s.readIndex()
	if err != nil {
		return 0, err
	}
	blobs := map[string]bool{}
	layers := map[string]bool{}
	var mark func(d ocispec.Descriptor) error
	mark = func(d ocispec.Descriptor) error {
		blobs[d.Digest.Encoded()] = true
		switch {
		case isIndex(d.MediaType):
			var ix ocispec.Index
			if err := s.readJSONBlob(d.Digest, &ix); err != nil {
				return err
			}
			for _, m := range ix.Manifests {
				if err := mark(m); err != nil {
					return err
				}
			}
		case isImageManifest(d.MediaType):
			var m ocispec.Manifest
			if err := s.readJSONBlob(d.Digest, &m); err != nil {
				return err
			}
			blobs[m.Config.Digest.Encoded()] = true
			for _, l := range m.Layers {
				blobs[l.Digest.Encoded()] = true
			}
			var cfg ocispec.Image
			if err := s.readJSONBlob(m.Config.Digest, &cfg); err != nil {
				return err
			}
			for _, d := range cfg.RootFS.DiffIDs {
				layers[d.Encoded()] = true
			}
		}
		return nil
	}
	for _, d := range idx.Manifests {
		if err := mark(d); err != nil {
			// Deleting with an incomplete mark set could destroy a live image.
			return 0, fmt.Errorf("garbage collect: %w", err)
		}
	}
	var freed int64
	blobDir := filepath.Join(s.LayoutDir(), "blobs", "sha256")
	ents, err := os.ReadDir(blobDir)
	if err != nil {
		return 0, fmt.Errorf("garbage collect: %w", err)
	}
	for _, e := range ents {
		if blobs[e.Name()] {
			continue
		}
		if fi, err := e.Info(); err == nil {
			freed += fi.Size()
		}
		if err := os.Remove(filepath.Join(blobDir, e.Name())); err != nil {
			s.log.Warn().Err(err).Str("blob", e.Name()).Msg("remove blob")
		}
	}
	layerRoot := filepath.Join(s.root, "layers")
	ents, err = os.ReadDir(layerRoot)
	if err != nil {
		return freed, fmt.Errorf("garbage collect: %w", err)
	}
	for _, e := range ents {
		if layers[e.Name()] || e.Name() == "empty" {
			continue
		}
		if _, err := digest.Parse("sha256:" + e.Name()); err != nil {
			continue
		}
		freed += s.layerSize(digest.NewDigestFromEncoded(digest.SHA256, e.Name()))
		if err := os.RemoveAll(filepath.Join(layerRoot, e.Name())); err != nil {
			s.log.Warn().Err(err).Str("layer", e.Name()).Msg("remove layer")
		}
	}
	// No pull runs, so whatever is in tmp (partial blobs, staging dirs) is abandoned.
	for _, sub := range []string{"ingest", "unpack"} {
		ents, _ := os.ReadDir(filepath.Join(s.tmpDir(), sub))
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".lock") {
				continue
			}
			os.RemoveAll(filepath.Join(s.tmpDir(), sub, e.Name()))
		}
	}
	return freed, nil
}
