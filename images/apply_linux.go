package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Overlay's on-disk whiteout conventions (Documentation/filesystems/overlayfs.rst).
const (
	whiteoutPrefix   = ".wh."
	whiteoutMeta     = ".wh..wh."
	whiteoutOpaque   = ".wh..wh..opq"
	xattrOpaque      = "trusted.overlay.opaque"
	xattrOverlayPfx  = "trusted.overlay."
	xattrUserOverlay = "user.overlay."
)

// ErrUnsafeEntry classifies a layer entry that would write outside its directory. It
// wraps errdefs.ErrInvalidArgument.
var ErrUnsafeEntry = fmt.Errorf("unsafe layer entry: %w", errdefs.ErrInvalidArgument)

// applier writes archive entries below one directory and nowhere else.
//
// Every path is resolved with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) from the root
// fd, and the last component is always handled with *at calls that do not follow
// symlinks. So a "..", an absolute name, a symlink planted earlier in the archive (even one
// swapped in for a directory mid-archive) or a hardlink naming a host file cannot reach
// outside: the kernel refuses the walk rather than us checking strings and racing.
type applier struct {
	outer    int    // fd of the directory holding the root
	rootName string // the root's name in outer
	root     int    // O_PATH fd of the root
	overlay  bool   // whiteouts become overlay whiteouts (layer dirs) instead of deletions (copies)
	asRoot   bool
	limit    int64 // max file data bytes, 0 for no limit
	written  int64
	// guard stops the layer before it takes the filesystem's last free space or
	// inodes (see diskGuard), whatever limit says.
	guard diskGuard
	// writeback starts writeback of file data every writebackChunk bytes, for
	// layers that are synced before they are published (see fetchUnpackLayer).
	writeback bool
	dirs      []dirTime
	buf       []byte
	log       zerolog.Logger
}

type dirTime struct {
	p  string
	ts [2]unix.Timespec
}

// newApplier opens root (a directory) for applying entries.
func newApplier(root string, overlay bool, limit int64, log zerolog.Logger) (*applier, error) {
	outerPath, name := path.Split(path.Clean(root))
	if outerPath == "" {
		outerPath = "."
	}
	outer, err := unix.Open(outerPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", outerPath, err)
	}
	rfd, err := unix.Openat(outer, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(outer)
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	return &applier{
		outer: outer, rootName: name, root: rfd, overlay: overlay,
		asRoot: os.Geteuid() == 0, limit: limit, guard: diskGuard{dir: root}, buf: make([]byte, 128<<10), log: log,
	}, nil
}

func (a *applier) close() {
	unix.Close(a.root)
	unix.Close(a.outer)
}

func unsafeErr(name, why string) error {
	return fmt.Errorf("entry %q: %s: %w", name, why, ErrUnsafeEntry)
}

// cleanName validates an archive path and returns it cleaned and relative ("." is the root).
func cleanName(name string) (string, error) {
	if name == "" {
		return "", unsafeErr(name, "empty name")
	}
	if strings.HasPrefix(name, "/") {
		return "", unsafeErr(name, "absolute path")
	}
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", unsafeErr(name, "path escapes the layer through ..")
	}
	return p, nil
}

var resolveHow = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openDir opens rel (a cleaned relative dir) below the root as O_PATH; with create,
// missing directories are made (0755, as tar does for implied parents).
func (a *applier) openDir(rel string, create bool) (int, error) {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: uint64(resolveHow)}
	fd, err := unix.Openat2(a.root, rel, how)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.ENOENT) || !create {
		return -1, a.resolveErr(rel, err)
	}
	cur, err := unix.Openat2(a.root, ".", how)
	if err != nil {
		return -1, fmt.Errorf("open layer root: %w", err)
	}
	for _, c := range strings.Split(rel, "/") {
		if err := unix.Mkdirat(cur, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(cur)
			return -1, fmt.Errorf("create dir %q: %w", rel, err)
		}
		next, err := unix.Openat2(cur, c, how)
		unix.Close(cur)
		if err != nil {
			return -1, a.resolveErr(rel, err)
		}
		cur = next
	}
	return cur, nil
}

func (a *applier) resolveErr(rel string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("dir %q: path goes through a symlink: %w", rel, ErrUnsafeEntry)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("dir %q: path leaves the layer: %w", rel, ErrUnsafeEntry)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("entry %q: a parent is not a directory: %w", rel, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("open %q: %w", rel, err)
}

// parent returns an fd for p's parent dir and p's last component; for the root itself it
// is the outer dir and the root's name. The caller closes the fd.
func (a *applier) parent(p string, create bool) (int, string, error) {
	if p == "." {
		fd, err := unix.Dup(a.outer)
		return fd, a.rootName, err
	}
	dir, base := path.Split(p)
	if dir == "" {
		dir = "."
	}
	fd, err := a.openDir(strings.TrimSuffix(dir, "/"), create)
	if err != nil {
		return -1, "", fmt.Errorf("entry %q: %w", p, err)
	}
	return fd, base, nil
}

// removeAt deletes name in dirfd, recursively for directories, without following symlinks.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := clearDir(fd); err != nil {
		unix.Close(fd)
		return err
	}
	unix.Close(fd)
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// clearDir deletes the contents of the directory open as fd (O_RDONLY).
func clearDir(fd int) error {
	dup, err := unix.Dup(fd)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(dup), "dir")
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := removeAt(fd, n); err != nil {
			return err
		}
	}
	return nil
}

// applyTar applies every entry of a layer tar.
func (a *applier) applyTar(ctx context.Context, tr *tar.Reader) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer tar: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		p, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		base := path.Base(p)
		if strings.HasPrefix(base, whiteoutPrefix) {
			dir := path.Dir(p)
			switch {
			case base == whiteoutOpaque:
				err = a.opaque(dir)
			case strings.HasPrefix(base, whiteoutMeta):
				// aufs bookkeeping (.wh..wh.plnk and friends) carries no content.
			default:
				name := base[len(whiteoutPrefix):]
				if name == "." || name == ".." {
					return unsafeErr(hdr.Name, "whiteout names a parent")
				}
				err = a.whiteout(path.Join(dir, name))
			}
			if err != nil {
				return err
			}
			continue
		}
		if err := a.entry(p, hdr, tr); err != nil {
			return err
		}
	}
	return a.finish()
}

// whiteout hides p: an overlay whiteout in a layer dir, a deletion in a copied rootfs.
func (a *applier) whiteout(p string) error {
	if a.overlay {
		pfd, base, err := a.parent(p, true)
		if err != nil {
			return err
		}
		defer unix.Close(pfd)
		if err := removeAt(pfd, base); err != nil {
			return fmt.Errorf("whiteout %q: %w", p, err)
		}
		if err := unix.Mknodat(pfd, base, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("whiteout %q: %w", p, err)
		}
		return nil
	}
	pfd, base, err := a.parent(p, false)
	if errors.Is(err, ErrUnsafeEntry) {
		return err
	}
	if err != nil {
		return nil // nothing below to hide
	}
	defer unix.Close(pfd)
	if err := removeAt(pfd, base); err != nil {
		return fmt.Errorf("whiteout %q: %w", p, err)
	}
	return nil
}

// opaque marks dir as hiding everything below it in lower layers.
func (a *applier) opaque(dir string) error {
	fd, err := a.openDir(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if a.overlay {
		if err := unix.Setxattr("/proc/self/fd/"+strconv.Itoa(fd), xattrOpaque, []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %q opaque: %w", dir, err)
		}
		return nil
	}
	rfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %q: %w", dir, err)
	}
	defer unix.Close(rfd)
	if err := clearDir(rfd); err != nil {
		return fmt.Errorf("clear opaque dir %q: %w", dir, err)
	}
	return nil
}

// entry creates p from hdr (and r for file data), then applies its metadata.
func (a *applier) entry(p string, hdr *tar.Header, r io.Reader) error {
	if p == "." && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("entry %q: the root must be a directory: %w", hdr.Name, errdefs.ErrInvalidArgument)
	}
	if err := a.guard.use(0, 1); err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	pfd, base, err := a.parent(p, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		var st unix.Stat_t
		err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := removeAt(pfd, base); err != nil {
				return fmt.Errorf("replace %q: %w", p, err)
			}
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return fmt.Errorf("create dir %q: %w", p, err)
			}
		}
	//lint:ignore SA1019 old archives still use the NUL typeflag
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		if err := removeAt(pfd, base); err != nil {
			return fmt.Errorf("replace %q: %w", p, err)
		}
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create %q: %w", p, err)
		}
		err = a.writeData(fd, r)
		if cerr := unix.Close(fd); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %q: %w", p, err)
		}
	case tar.TypeSymlink:
		// The target is stored, never followed: every later walk refuses symlinks.
		if err := removeAt(pfd, base); err != nil {
			return fmt.Errorf("replace %q: %w", p, err)
		}
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return fmt.Errorf("create symlink %q: %w", p, err)
		}
	case tar.TypeLink:
		lp, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hardlink %q: %w", hdr.Name, err)
		}
		if lp == p || lp == "." {
			return fmt.Errorf("hardlink %q to %q: %w", hdr.Name, hdr.Linkname, errdefs.ErrInvalidArgument)
		}
		lfd, lbase, err := a.parent(lp, false)
		if err != nil {
			return fmt.Errorf("hardlink %q: target %q: %w", hdr.Name, hdr.Linkname, err)
		}
		defer unix.Close(lfd)
		if err := removeAt(pfd, base); err != nil {
			return fmt.Errorf("replace %q: %w", p, err)
		}
		// No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
		if err := unix.Linkat(lfd, lbase, pfd, base, 0); err != nil {
			return fmt.Errorf("hardlink %q to %q: %w", hdr.Name, hdr.Linkname, err)
		}
		return nil // a hardlink shares its target's inode and metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		if kind != unix.S_IFIFO && !a.asRoot {
			return fmt.Errorf("device node %q: needs root: %w", p, errdefs.ErrPermissionDenied)
		}
		if err := removeAt(pfd, base); err != nil {
			return fmt.Errorf("replace %q: %w", p, err)
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(pfd, base, kind|mode, int(dev)); err != nil {
			return fmt.Errorf("create node %q: %w", p, err)
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("entry %q: unsupported tar type %q: %w", hdr.Name, hdr.Typeflag, errdefs.ErrNotImplemented)
	}
	return a.meta(pfd, base, p, hdr)
}

// meta applies ownership, mode, xattrs and times. chown comes before chmod because chown
// clears set-id bits.
func (a *applier) meta(pfd int, base, p string, hdr *tar.Header) error {
	symlink := hdr.Typeflag == tar.TypeSymlink
	if a.asRoot {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %q: %w", p, err)
		}
	}
	if !symlink {
		// fchmodat follows a final symlink, but this entry was just created as a non-symlink
		// by us and nothing else writes below the root.
		if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode)&0o7777, 0); err != nil {
			return fmt.Errorf("chmod %q: %w", p, err)
		}
		if err := a.xattrs(pfd, base, p, hdr); err != nil {
			return err
		}
	}
	ts := [2]unix.Timespec{unix.NsecToTimespec(hdr.AccessTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if hdr.AccessTime.IsZero() {
		ts[0] = ts[1]
	}
	if hdr.Typeflag == tar.TypeDir {
		// Creating children changes a directory's mtime: set it at the end.
		a.dirs = append(a.dirs, dirTime{p: p, ts: ts})
		return nil
	}
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %q: %w", p, err)
	}
	return nil
}

func (a *applier) xattrs(pfd int, base, p string, hdr *tar.Header) error {
	var names []string
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return nil
	}
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %q: %w", p, err)
	}
	defer unix.Close(fd)
	for _, k := range names {
		name := strings.TrimPrefix(k, "SCHILY.xattr.")
		// A layer must not forge overlay's own attributes (opaque, redirect, metacopy).
		if strings.HasPrefix(name, xattrOverlayPfx) || strings.HasPrefix(name, xattrUserOverlay) {
			a.log.Debug().Str("path", p).Str("xattr", name).Msg("drop overlay xattr from layer")
			continue
		}
		if err := unix.Setxattr("/proc/self/fd/"+strconv.Itoa(fd), name, []byte(hdr.PAXRecords[k]), 0); err != nil {
			a.log.Debug().Err(err).Str("path", p).Str("xattr", name).Msg("set xattr")
		}
	}
	return nil
}

var zeros = make([]byte, 128<<10)

// writeData copies file data, seeking over all-zero blocks so sparse files stay sparse
// and a small layer cannot fill the disk with zeros.
func (a *applier) writeData(fd int, r io.Reader) error {
	var off, unkicked int64
	for {
		n, err := io.ReadFull(r, a.buf)
		if n > 0 {
			chunk := a.buf[:n]
			if !bytes.Equal(chunk, zeros[:n]) {
				a.written += int64(n)
				if a.limit > 0 && a.written > a.limit {
					return fmt.Errorf("layer data exceeds the %d-byte limit: %w", a.limit, errdefs.ErrResourceExhausted)
				}
				if err := a.guard.use(int64(n), 0); err != nil {
					return err
				}
				for len(chunk) > 0 {
					w, werr := unix.Pwrite(fd, chunk, off)
					if werr != nil {
						return werr
					}
					chunk, off = chunk[w:], off+int64(w)
					unkicked += int64(w)
				}
				if a.writeback && unkicked >= writebackChunk {
					// Without waiting: the sync before the layer is published then
					// has little left to write.
					_ = unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
					unkicked = 0
				}
			} else {
				off += int64(n)
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	return unix.Ftruncate(fd, off)
}

// finish sets directory times, deepest first.
func (a *applier) finish() error {
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		pfd, base, err := a.parent(d.p, false)
		if err != nil {
			return err
		}
		err = unix.UtimesNanoAt(pfd, base, d.ts[:], unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(pfd)
		if err != nil {
			return fmt.Errorf("set times of %q: %w", d.p, err)
		}
	}
	a.dirs = nil
	return nil
}
