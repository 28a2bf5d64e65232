package container

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// initExecutable returns an fd of the cubo-runc binary to re-execute as the
// container init, such that the container can never write to it.
//
// See CVE-2019-5736: a container process may open /proc/<init>/exe while the
// init still runs our binary, and write through that fd once the init has
// exec'd away (when the binary is no longer text-busy). runc copies itself
// into a sealed memfd for every container; that costs about 0.65 ms per MB.
// Instead we exec from a detached, read-only bind mount of the binary
// (open_tree + mount_setattr, never attached to any tree): /proc/<pid>/exe
// then points into a read-only mount, so a write fails with EROFS, and the
// clone costs one syscall pair. The memfd copy remains as the fallback for
// kernels without the new mount API.
func initExecutable() (*os.File, error) {
	f, err := roBindSelf()
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EINVAL) {
		return nil, err
	}
	return sealedCopy()
}

func roBindSelf() (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, "/proc/self/exe", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("clone runtime binary mount: %w", err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make runtime binary mount read-only: %w", err)
	}
	return os.NewFile(uintptr(fd), "cubo-runc"), nil
}

// sealedCopy copies the binary into a memfd and seals it against writes.
func sealedCopy() (*os.File, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("open runtime binary: %w", err)
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("cubo-runc", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("create memfd for runtime binary: %w", err)
	}
	f := os.NewFile(uintptr(fd), "cubo-runc")
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("copy runtime binary: %w", err)
	}
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal runtime binary copy: %w", err)
	}
	return f, nil
}
