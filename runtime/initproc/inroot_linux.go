package initproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// openInRoot opens path (absolute, as seen from inside the container)
// relative to the rootfs handle, with the kernel resolving every symlink
// as if root were "/" (RESOLVE_IN_ROOT) and refusing magic links, so no
// component can lead out of the rootfs, even one swapped in concurrently.
// It returns an O_PATH handle.
//
// This is one openat2 per lookup; filepath-securejoin's pure-Go handle
// functions, which we used before, verify every component through procfs
// and cost about a thousand syscalls per container on the create path.
func openInRoot(root *os.File, path string) (*os.File, error) {
	return openat2InRoot(root, path, unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_MAGICLINKS)
}

// openInRootNoSymlinks is openInRoot for a path that must not go through
// any symlink (ELOOP if it does): what it opens is path itself.
func openInRootNoSymlinks(root *os.File, path string) (*os.File, error) {
	return openat2InRoot(root, path, unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_SYMLINKS)
}

func openat2InRoot(root *os.File, path string, resolve uint64) (*os.File, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: resolve,
	}
	rel := strings.TrimLeft(filepath.Clean("/"+path), "/")
	if rel == "" {
		rel = "."
	}
	var fd int
	var err error
	for {
		fd, err = unix.Openat2(int(root.Fd()), rel, how)
		if err != unix.EINTR && err != unix.EAGAIN {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// mkdirAllInRoot creates path and its missing parents inside the rootfs
// and returns an O_PATH handle to it. Each new directory is made with
// mkdirat on a parent handle from openInRoot, so a concurrent symlink swap
// can only make mkdirat fail, never redirect it.
func mkdirAllInRoot(root *os.File, path string, mode uint32) (*os.File, error) {
	f, err := openInRoot(root, path)
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return nil, err
	}
	clean := filepath.Clean("/" + path)
	if clean == "/" {
		return nil, err
	}
	parent, err := mkdirAllInRoot(root, filepath.Dir(clean), mode)
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	if err := unix.Mkdirat(int(parent.Fd()), filepath.Base(clean), mode); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("mkdir %s: %w", clean, err)
	}
	return openInRoot(root, clean)
}
