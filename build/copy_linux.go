package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// copier writes COPY/ADD sources into a mounted rootfs. Every destination is resolved
// with securejoin, so symlinks in the image cannot send a write outside the rootfs; the
// last component is never followed for non-directories (it is replaced instead).
type copier struct {
	rootfs   string
	owner    *[2]int      // --chown uid, gid; nil keeps 0:0 (context) or the archive's owners
	chmod    *fs.FileMode // --chmod
	ignore   *ignoreMatcher
	preserve bool // keep source owners (COPY --from copies from an image, as Docker does)
}

// hostPath resolves p (absolute, inside the image) to a host path in the rootfs whose
// parent is resolved and whose last component is not followed.
func (c *copier) hostPath(p string) (string, error) {
	p = path.Clean("/" + p)
	if p == "/" {
		return c.rootfs, nil
	}
	parent, err := securejoin.SecureJoin(c.rootfs, path.Dir(p))
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", p, err)
	}
	return filepath.Join(parent, path.Base(p)), nil
}

// mkdirAll creates dir (inside the image) and its missing parents, owned by the --chown
// owner or root, and returns its host path.
func (c *copier) mkdirAll(dir string) (string, error) {
	dir = path.Clean("/" + dir)
	if dir == "/" {
		return c.rootfs, nil
	}
	if _, err := c.mkdirAll(path.Dir(dir)); err != nil {
		return "", err
	}
	// Directories are followed (COPY into a symlinked dir lands in its target), within
	// the rootfs.
	h, err := securejoin.SecureJoin(c.rootfs, dir)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	fi, err := os.Lstat(h)
	switch {
	case err == nil && fi.IsDir():
		return h, nil
	case err == nil:
		return "", fmt.Errorf("create directory %s: a file is in the way: %w", dir, errdefs.ErrFailedPrecondition)
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	if err := os.Mkdir(h, 0o755); err != nil {
		return "", fmt.Errorf("create directory %s: %w", dir, err)
	}
	uid, gid := 0, 0
	if c.owner != nil {
		uid, gid = c.owner[0], c.owner[1]
	}
	if err := os.Lchown(h, uid, gid); err != nil {
		return "", fmt.Errorf("chown %s: %w", dir, err)
	}
	return h, nil
}

// isDir reports whether p (inside the image) is an existing directory, following
// symlinks within the rootfs.
func (c *copier) isDir(p string) bool {
	h, err := securejoin.SecureJoin(c.rootfs, p)
	if err != nil {
		return false
	}
	fi, err := os.Stat(h)
	return err == nil && fi.IsDir()
}

// copyTree copies the file or directory src (a host path) to dst (inside the image);
// a directory's contents go into dst. rel is src's context-relative name, for the
// ignore rules ("" when there are none).
func (c *copier) copyTree(src, rel, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(src, p)
		r = filepath.ToSlash(r)
		if p != src && c.ignore != nil && c.ignore.match(path.Join(rel, r)) {
			return c.ignore.skip(d)
		}
		target := path.Join(dst, r)
		if d.IsDir() {
			if _, err := c.mkdirAll(target); err != nil {
				return err
			}
			return nil
		}
		if _, err := c.mkdirAll(path.Dir(target)); err != nil {
			return err
		}
		return c.copyEntry(p, target)
	})
}

// copyEntry copies one non-directory entry, replacing whatever is at dst.
func (c *copier) copyEntry(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	h, err := c.hostPath(dst)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(h); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("copy to %s: a directory is in the way: %w", dst, errdefs.ErrFailedPrecondition)
		}
		if err := os.Remove(h); err != nil {
			return fmt.Errorf("replace %s: %w", dst, err)
		}
	}
	mode := fs.FileMode(st.Mode & 0o7777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(h, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w", dst, err)
		}
		_, err = io.Copy(out, in)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", dst, err)
		}
	case unix.S_IFLNK:
		t, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(t, h); err != nil {
			return fmt.Errorf("create %s: %w", dst, err)
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		if err := unix.Mknod(h, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("create %s: %w", dst, err)
		}
	default:
		return nil // sockets
	}
	uid, gid := 0, 0
	if c.preserve {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	return c.finish(h, dst, st.Mode&unix.S_IFMT == unix.S_IFLNK, mode, uid, gid, time.Unix(st.Mtim.Unix()))
}

// finish sets owner, mode and mtime of a created entry.
func (c *copier) finish(h, name string, symlink bool, mode fs.FileMode, uid, gid int, mtime time.Time) error {
	if c.owner != nil {
		uid, gid = c.owner[0], c.owner[1]
	}
	if err := os.Lchown(h, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", name, err)
	}
	if !symlink {
		if c.chmod != nil {
			mode = *c.chmod
		}
		// Chmod after chown: chown clears setuid/setgid bits.
		if err := unix.Fchmodat(unix.AT_FDCWD, h, uint32(mode), 0); err != nil {
			return fmt.Errorf("chmod %s: %w", name, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, h, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", name, err)
	}
	return nil
}

// openArchive returns a tar reader when the file is a tar archive (plain, gzip, bzip2,
// xz or zstd), which ADD extracts; ok is false for any other file.
func openArchive(p string) (tr *tar.Reader, closeFn func(), ok bool) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, false
	}
	br := bufio.NewReader(f)
	magic, _ := br.Peek(6)
	var r io.Reader = br
	closeFn = func() { f.Close() }
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, false
		}
		r = zr
	case bytes.HasPrefix(magic, []byte("BZh")):
		r = bzip2.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		xr, err := xz.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, false
		}
		r = xr
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, false
		}
		r = zr
		closeFn = func() { zr.Close(); f.Close() }
	}
	// A tar archive has "ustar" at offset 257 of its first header.
	hr := bufio.NewReaderSize(r, 1024)
	head, _ := hr.Peek(512)
	if len(head) < 512 || !bytes.HasPrefix(head[257:], []byte("ustar")) {
		closeFn()
		return nil, nil, false
	}
	return tar.NewReader(hr), closeFn, true
}

// extract writes the archive's entries under dst (inside the image). Names that climb
// out of dst are refused, and every path resolves inside the rootfs.
func (c *copier) extract(tr *tar.Reader, dst string) error {
	if _, err := c.mkdirAll(dst); err != nil {
		return err
	}
	type dirTime struct {
		h string
		t time.Time
	}
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := path.Clean(hdr.Name)
		if name == ".." || strings.HasPrefix(name, "../") || strings.HasPrefix(hdr.Name, "/") && strings.Contains(hdr.Name, "..") {
			return fmt.Errorf("archive entry %q escapes the destination: %w", hdr.Name, errdefs.ErrInvalidArgument)
		}
		name = strings.TrimPrefix(name, "/")
		if name == "." || name == "" {
			continue
		}
		target := path.Join(dst, name)
		if _, err := c.mkdirAll(path.Dir(target)); err != nil {
			return err
		}
		mode := fs.FileMode(hdr.Mode & 0o7777)
		if hdr.Typeflag == tar.TypeDir {
			h, err := c.mkdirAll(target)
			if err != nil {
				return err
			}
			if err := c.finish(h, target, false, mode, hdr.Uid, hdr.Gid, hdr.ModTime); err != nil {
				return err
			}
			dirs = append(dirs, dirTime{h, hdr.ModTime})
			continue
		}
		h, err := c.hostPath(target)
		if err != nil {
			return err
		}
		if fi, err := os.Lstat(h); err == nil {
			if fi.IsDir() {
				if err := os.RemoveAll(h); err != nil {
					return err
				}
			} else if err := os.Remove(h); err != nil {
				return err
			}
		}
		symlink := false
		switch hdr.Typeflag {
		case tar.TypeReg:
			out, err := os.OpenFile(h, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if err != nil {
				return fmt.Errorf("create %s: %w", target, err)
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", target, err)
			}
		case tar.TypeSymlink:
			symlink = true
			if err := os.Symlink(hdr.Linkname, h); err != nil {
				return fmt.Errorf("create %s: %w", target, err)
			}
		case tar.TypeLink:
			ln := path.Clean(hdr.Linkname)
			if ln == ".." || strings.HasPrefix(ln, "../") {
				return fmt.Errorf("archive entry %q links out of the destination: %w", hdr.Name, errdefs.ErrInvalidArgument)
			}
			old, err := securejoin.SecureJoin(c.rootfs, path.Join(dst, ln))
			if err != nil {
				return err
			}
			if err := os.Link(old, h); err != nil {
				return fmt.Errorf("link %s: %w", target, err)
			}
			continue
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			ft := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
			if err := unix.Mknod(h, ft|uint32(mode), int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
				return fmt.Errorf("create %s: %w", target, err)
			}
		default:
			continue
		}
		if err := c.finish(h, target, symlink, mode, hdr.Uid, hdr.Gid, hdr.ModTime); err != nil {
			return err
		}
	}
	// Directory times last: creating entries inside them changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		t := unix.NsecToTimespec(dirs[i].t.UnixNano())
		_ = unix.UtimesNanoAt(unix.AT_FDCWD, dirs[i].h, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}
