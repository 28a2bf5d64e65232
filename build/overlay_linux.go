package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/images"
)

// mounted is a stage's rootfs as an overlay in a temp dir.
type mounted struct {
	dir, upper, rootfs string
	store              *images.Store
	isMounted          bool
}

// mountState mounts st's layers (unpacking any that are missing) as an overlay with a
// fresh upper dir. Build needs overlayfs: the upper dir is the layer.
func (b *builder) mountState(ctx context.Context, st *stageState) (*mounted, error) {
	dir, err := os.MkdirTemp(b.tmp, "step-")
	if err != nil {
		return nil, fmt.Errorf("create step dir: %w", err)
	}
	m := &mounted{dir: dir, upper: filepath.Join(dir, "upper"), rootfs: filepath.Join(dir, "rootfs"), store: b.store}
	for _, d := range []string{m.upper, filepath.Join(dir, "work"), m.rootfs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			m.release()
			return nil, fmt.Errorf("create step dir: %w", err)
		}
	}
	img := &images.Image{Manifest: ocispec.Manifest{Layers: st.layers}, Config: ocispec.Image{RootFS: ocispec.RootFS{DiffIDs: st.diffIDs}}}
	lowers, err := b.store.LayerDirs(ctx, img)
	if err != nil {
		m.release()
		return nil, err
	}
	if err := b.store.Mount(lowers, m.upper, filepath.Join(dir, "work"), m.rootfs); err != nil {
		m.release()
		return nil, err
	}
	m.isMounted = true
	var sfs unix.Statfs_t
	if err := unix.Statfs(m.rootfs, &sfs); err != nil || sfs.Type != unix.OVERLAYFS_SUPER_MAGIC {
		m.release()
		return nil, fmt.Errorf("build needs overlayfs for its rootfs: %w", errdefs.ErrNotImplemented)
	}
	return m, nil
}

func (m *mounted) unmount() error {
	if !m.isMounted {
		return nil
	}
	if err := m.store.Unmount(m.rootfs); err != nil {
		return err
	}
	m.isMounted = false
	return nil
}

// release unmounts and deletes everything.
func (m *mounted) release() {
	if err := m.unmount(); err != nil {
		// Deleting through a live mount would delete lower layers' view; keep the dir.
		return
	}
	os.RemoveAll(m.dir)
}

// inOverlay mounts st, runs fn on the rootfs, and turns the upper dir into a layer in the
// store. Stub paths (relative) that fn's runtime created as empty mount points are
// dropped from the layer. ok is false when nothing changed.
func (b *builder) inOverlay(ctx context.Context, st *stageState, fn func(rootfs string) error, stubs []string) (desc ocispec.Descriptor, diffID digest.Digest, ok bool, err error) {
	m, err := b.mountState(ctx, st)
	if err != nil {
		return desc, "", false, err
	}
	defer m.release()
	var missing []string
	for _, s := range stubs {
		if _, err := os.Lstat(filepath.Join(m.rootfs, s)); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, s)
		}
	}
	if err := fn(m.rootfs); err != nil {
		return desc, "", false, err
	}
	if err := m.unmount(); err != nil {
		return desc, "", false, err
	}
	for _, s := range missing {
		p := filepath.Join(m.upper, s)
		if fi, err := os.Lstat(p); err == nil && (fi.IsDir() || fi.Size() == 0) {
			_ = os.Remove(p) // fails, as it should, for a dir the command filled
		}
	}
	blob := filepath.Join(m.dir, "layer.tar.gz")
	desc, diffID, ok, err = writeLayer(m.upper, blob)
	if err != nil || !ok {
		return desc, diffID, ok, err
	}
	if err := b.store.AddLayer(ctx, blob, desc, diffID); err != nil {
		return desc, "", false, err
	}
	return desc, diffID, true, nil
}
