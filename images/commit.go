package images

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Hold takes the store's shared lock until the returned release is called, so that no
// removal or garbage collection deletes blobs or layers a long operation (a build)
// relies on between its steps. Pulls, imports and other holds run meanwhile.
func (s *Store) Hold() (release func(), err error) {
	return s.lock("images.lock", unix.LOCK_SH)
}

// HasLayer reports whether the blob of a layer is in the store (its unpacked form is
// made again by LayerDirs when missing).
func (s *Store) HasLayer(desc ocispec.Descriptor) bool {
	return desc.Digest.Validate() == nil && s.hasBlob(desc.Digest, desc.Size)
}

// AddLayer stores the layer blob in the file blobPath, whose digest, size and media type
// desc declares and whose uncompressed digest is diffID, and unpacks it like a pulled
// layer; both digests are verified on the way. The caller keeps blobPath. Call it under
// Hold so that a concurrent GC cannot delete the layer before an image refers to it.
func (s *Store) AddLayer(ctx context.Context, blobPath string, desc ocispec.Descriptor, diffID digest.Digest) error {
	if _, err := s.ingest(desc.Digest, desc.Size, func() (io.ReadCloser, error) { return os.Open(blobPath) }, nil); err != nil {
		return fmt.Errorf("add layer %s: %w", desc.Digest, err)
	}
	if err := s.unpackLayer(ctx, desc, diffID, nil); err != nil {
		return fmt.Errorf("add layer %s: %w", desc.Digest, err)
	}
	return nil
}

// Commit writes the config and an image manifest listing layers (already in the store,
// see AddLayer) and records the image under name, or as a dangling image when name is
// empty. It returns the new image.
func (s *Store) Commit(ctx context.Context, cfg *ocispec.Image, layers []ocispec.Descriptor, name string) (*Image, error) {
	var names []string
	if name != "" {
		if _, err := parseRef(name); err != nil {
			return nil, err
		}
		names = []string{name}
	}
	if layers == nil {
		layers = []ocispec.Descriptor{}
	}
	return s.commitImage(cfg, layers, names)
}
