package initproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// defaultDevices are created in every container whose /dev is not a bind
// mount, as runc does; config.json's linux.devices may add or override.
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

func createDevices(root *os.File, s *specs.Spec, userns bool) error {
	devs := make([]specs.LinuxDevice, 0, len(defaultDevices)+8)
	seen := map[string]bool{}
	if s.Linux != nil {
		for _, d := range s.Linux.Devices {
			seen[filepath.Clean(d.Path)] = true
			devs = append(devs, d)
		}
	}
	for _, d := range defaultDevices {
		if !seen[d.Path] {
			devs = append(devs, d)
		}
	}
	// The modes in config.json are exact; the umask must not trim them.
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, d := range devs {
		create := createDevice
		if userns {
			create = bindDevice
		}
		if err := create(root, d); err != nil {
			return err
		}
	}
	return nil
}

func createDevice(root *os.File, d specs.LinuxDevice) error {
	dest := filepath.Clean("/" + d.Path)
	if dest == "/" || filepath.Dir(dest) == "/" && filepath.Base(dest) == "dev" {
		return fmt.Errorf("invalid device path %q", d.Path)
	}
	var mode uint32
	switch d.Type {
	case "c", "u":
		mode = unix.S_IFCHR
	case "b":
		mode = unix.S_IFBLK
	case "p":
		mode = unix.S_IFIFO
	default:
		return fmt.Errorf("device %s: unsupported type %q", d.Path, d.Type)
	}
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(*d.FileMode & 0o7777)
	}
	parent, err := mkdirAllInRoot(root, filepath.Dir(dest), 0o755)
	if err != nil {
		return fmt.Errorf("create device %s: %w", d.Path, err)
	}
	defer parent.Close()
	dirfd := int(parent.Fd())
	name := filepath.Base(dest)
	// A file left in the image's /dev must not survive as something else.
	if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EISDIR) {
		return fmt.Errorf("replace device %s: %w", d.Path, err)
	}
	if err := unix.Mknodat(dirfd, name, mode|perm, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil {
		return fmt.Errorf("mknod %s: %w", d.Path, err)
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown device %s: %w", d.Path, err)
	}
	return nil
}

// setupDevSymlinks creates the standard /dev links and points /dev/ptmx at
// the container's own devpts instance.
func setupDevSymlinks(rootfs string) error {
	links := [][2]string{
		{"/proc/self/fd", "dev/fd"},
		{"/proc/self/fd/0", "dev/stdin"},
		{"/proc/self/fd/1", "dev/stdout"},
		{"/proc/self/fd/2", "dev/stderr"},
	}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		links = append(links, [2]string{"/proc/kcore", "dev/core"})
	}
	dev, err := os.OpenFile(filepath.Join(rootfs, "dev"), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("open /dev: %w", err)
	}
	defer dev.Close()
	for _, l := range links {
		if err := unix.Symlinkat(l[0], int(dev.Fd()), filepath.Base(l[1])); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink /%s: %w", l[1], err)
		}
	}
	// /dev/ptmx must be the container's devpts ptmx, not a host node.
	var st unix.Stat_t
	if unix.Fstatat(int(dev.Fd()), "pts/ptmx", &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		if err := unix.Unlinkat(int(dev.Fd()), "ptmx", 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove /dev/ptmx: %w", err)
		}
		if err := unix.Symlinkat("pts/ptmx", int(dev.Fd()), "ptmx"); err != nil {
			return fmt.Errorf("symlink /dev/ptmx: %w", err)
		}
	}
	return nil
}

// bindDevice bind-mounts the host's node for d, for containers in a user
// namespace, where mknod is not allowed.
func bindDevice(root *os.File, d specs.LinuxDevice) error {
	dest := filepath.Clean("/" + d.Path)
	f, err := mkTarget(root, dest, false)
	if err != nil {
		return fmt.Errorf("create device %s: %w", d.Path, err)
	}
	defer f.Close()
	if err := mount(d.Path, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount device %s: %w", d.Path, err)
	}
	return nil
}
