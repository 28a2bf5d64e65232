package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

type mountOpts struct{ copy bool }

// MountOpt configures Mount.
type MountOpt func(*mountOpts)

// MountWithCopy makes Mount copy the layers into target instead of trying overlayfs.
func MountWithCopy() MountOpt { return func(o *mountOpts) { o.copy = true } }

// MountImage mounts img's rootfs at target; see Mount.
func (s *Store) MountImage(ctx context.Context, img *Image, upper, work, target string, opts ...MountOpt) error {
	layers, err := s.LayerDirs(ctx, img)
	if err != nil {
		return err
	}
	return s.Mount(layers, upper, work, target, opts...)
}

// Mount makes target a rootfs of layers (lower dirs from LayerDirs, base layer first):
// an overlayfs with upper and work as the writable part, so its cost does not depend on
// the image size and the layers are never written. upper and work must be empty dirs on
// one filesystem. Where overlayfs is unavailable (ENODEV, or EINVAL for an unsupported
// upper filesystem) it falls back to copying the layers into target, applying whiteouts;
// upper and work are unused then and target is a plain directory. Unmount undoes either.
func (s *Store) Mount(layers []string, upper, work, target string, opts ...MountOpt) error {
	var o mountOpts
	for _, opt := range opts {
		opt(&o)
	}
	if len(layers) == 0 {
		layers = []string{s.emptyLayer()}
	}
	if !o.copy {
		err := mountOverlay(layers, upper, work, target)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
			return err
		}
		s.log.Warn().Err(err).Str("target", target).Msg("overlayfs unavailable, copying layers")
	}
	return copyLayers(layers, target)
}

// mountOverlay uses the new mount API: lowerdir+ takes one layer per call, so there is
// no page-size limit on the number of layers and no escaping of ':' or ','. Kernels
// before 6.8 lack lowerdir+ and get the classic mount(2) string.
func mountOverlay(layers []string, upper, work, target string) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) {
		return mountOverlayLegacy(layers, upper, work, target)
	}
	if err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	defer unix.Close(fsfd)
	for i := len(layers) - 1; i >= 0; i-- { // overlay lists the top layer first
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", layers[i]); err != nil {
			if errors.Is(err, unix.EINVAL) && i == len(layers)-1 {
				return mountOverlayLegacy(layers, upper, work, target)
			}
			return fmt.Errorf("mount overlay on %s: lower dir %s: %w%s", target, layers[i], err, fsLog(fsfd))
		}
	}
	for k, v := range map[string]string{"upperdir": upper, "workdir": work} {
		if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
			return fmt.Errorf("mount overlay on %s: %s %s: %w%s", target, k, v, err, fsLog(fsfd))
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("mount overlay on %s: %w%s", target, err, fsLog(fsfd))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("mount overlay on %s: %w%s", target, err, fsLog(fsfd))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

// fsLog reads the kernel's explanation of a failed fsconfig from the fs context.
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 512)
	for range 16 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

func mountOverlayLegacy(layers []string, upper, work, target string) error {
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`)
	lower := make([]string, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		lower = append(lower, esc.Replace(layers[i]))
	}
	data := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + esc.Replace(upper) + ",workdir=" + esc.Replace(work)
	if len(data) >= os.Getpagesize() {
		return fmt.Errorf("mount overlay on %s: %d layers do not fit in one page of options: %w", target, len(layers), errdefs.ErrNotImplemented)
	}
	if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

// Unmount undoes Mount. A target that is not a mount point (the copy fallback) is left
// as it is; the caller deletes it.
func (s *Store) Unmount(target string) error {
	for {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		}
		return fmt.Errorf("unmount %s: %w", target, err)
	}
}

// copyLayers applies layer dirs in order onto target, interpreting overlay whiteouts
// (0/0 char devices delete, opaque dirs clear what is below). It goes through the same
// applier as unpacking, so an absolute symlink from a lower layer can never redirect a
// write from an upper layer out of target.
func copyLayers(layers []string, target string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", target, err)
	}
	for _, l := range layers {
		if err := copyLayer(l, target); err != nil {
			return fmt.Errorf("copy layer %s to %s: %w", l, target, err)
		}
	}
	return nil
}

func copyLayer(layer, target string) error {
	a, err := newApplier(target, false, 0, zerolog.Nop())
	if err != nil {
		return err
	}
	defer a.close()
	links := map[[2]uint64]string{}
	err = filepath.WalkDir(layer, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(layer, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		if st != nil && fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0 {
			return a.whiteout(rel)
		}
		var link string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if st != nil {
			hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
			hdr.Uname, hdr.Gname = "", ""
			if fi.Mode().IsRegular() && st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				if first, ok := links[key]; ok {
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				} else {
					links[key] = rel
				}
			}
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			hdr.PAXRecords = readXattrs(p)
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := a.entry(cleanRel(rel), hdr, f); err != nil {
				return err
			}
		} else if err := a.entry(cleanRel(rel), hdr, nil); err != nil {
			return err
		}
		if d.IsDir() {
			if v, err := getXattr(p, xattrOpaque); err == nil && v == "y" {
				return a.opaque(rel)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return a.finish()
}

func cleanRel(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

func getXattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// readXattrs returns p's extended attributes as tar PAX records.
func readXattrs(p string) map[string]string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n <= 0 {
		return nil
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		if v, err := getXattr(p, name); err == nil {
			out["SCHILY.xattr."+name] = v
		}
	}
	return out
}
