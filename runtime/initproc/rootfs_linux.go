package initproc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/runtime/internal/proto"
	"github.com/cubo-dev/cubo/spec"
)

// setupRootfs mounts everything config.json asks for under the rootfs and
// switches the process root to it.
func (in *initState) setupRootfs() error {
	c := in.cfg
	s := c.Spec
	// Never let our mounts propagate back to the host: everything becomes
	// a slave (or what rootfsPropagation says) before the first mount.
	// rootfsPropagation is applied to the container's root after
	// pivot_root; until then everything is a slave, so nothing we mount
	// propagates to the host and the rootfs can still be bind-mounted (an
	// unbindable "/" would refuse that).
	prop := uintptr(unix.MS_SLAVE | unix.MS_REC)
	var rootProp uintptr
	if s.Linux != nil && s.Linux.RootfsPropagation != "" {
		p, ok := propagationFlags[s.Linux.RootfsPropagation]
		if !ok {
			return fmt.Errorf("invalid rootfsPropagation %q", s.Linux.RootfsPropagation)
		}
		rootProp = p
	}
	if err := mount("", "/", "", prop, ""); err != nil {
		return fmt.Errorf("set propagation of / to %s: %w", propName(prop), err)
	}
	// pivot_root refuses a new root whose parent mount is shared.
	// The host's mount table, read once: the cgroup mounts need it too, and
	// what we mount below the rootfs does not change those entries.
	hostMounts, err := readMountinfo()
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	in.hostMounts = hostMounts
	if err := makeParentPrivate(hostMounts, c.Rootfs); err != nil {
		return err
	}
	// pivot_root and MS_MOVE need the rootfs to be a mount point.
	if err := mount(c.Rootfs, c.Rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount rootfs %s: %w", c.Rootfs, err)
	}
	root, err := os.OpenFile(c.Rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer root.Close()

	devBound := false
	for i := range s.Mounts {
		m := &s.Mounts[i]
		if cleanDest(m.Destination) == "/dev" && isBind(m) {
			devBound = true
		}
		fd, ok := c.MountFds[i]
		if !ok {
			fd = -1
		}
		if err := in.mountOne(root, m, fd); err != nil {
			return err
		}
	}
	if !devBound {
		if err := createDevices(root, s, hasNS(s, specs.UserNamespace)); err != nil {
			return err
		}
		if err := setupDevSymlinks(c.Rootfs); err != nil {
			return err
		}
	}
	// runc creates a missing cwd (as root, before dropping privileges).
	if cwd := s.Process.Cwd; cwd != "" {
		if d, err := mkdirAllInRoot(root, inRoot(root, cwd), 0o755); err != nil {
			return fmt.Errorf("create cwd %s: %w", cwd, err)
		} else {
			d.Close()
		}
	}
	if c.HookSync {
		if err := proto.Send(in.sock, proto.Message{Type: proto.MsgHooks}); err != nil {
			return err
		}
		m, err := proto.RecvRaw(in.sock)
		if err != nil {
			return fmt.Errorf("wait for prestart hooks: %w", err)
		}
		if m.Type != proto.MsgHooksDone {
			return fmt.Errorf("wait for prestart hooks: unexpected %s message", m.Type)
		}
	}
	if s.Hooks != nil && len(s.Hooks.CreateContainer) > 0 {
		// createContainer hooks run in the container's namespaces but
		// before pivot_root, with the bundle as cwd.
		st := &specs.State{Version: s.Version, ID: c.ID, Status: specs.StateCreating, Pid: os.Getpid(), Bundle: c.Bundle, Annotations: s.Annotations}
		if err := runHooks(s.Hooks.CreateContainer, st, "createContainer"); err != nil {
			return err
		}
	}
	if c.NoPivot {
		err = moveRoot(c.Rootfs)
	} else {
		err = pivotRoot(c.Rootfs)
	}
	if err != nil {
		return err
	}
	if rootProp != 0 {
		if err := mount("", "/", "", rootProp, ""); err != nil {
			return fmt.Errorf("set propagation of / to %s: %w", propName(rootProp), err)
		}
	}
	return nil
}

var propagationFlags = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

func propName(p uintptr) string {
	for k, v := range propagationFlags {
		if v == p {
			return k
		}
	}
	return strconv.FormatUint(uint64(p), 16)
}

func cleanDest(d string) string {
	// runc 1.1 accepts relative destinations as relative to "/".
	return filepath.Clean("/" + d)
}

func isBind(m *specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// makeParentPrivate makes the mount holding path private if it is shared.
func makeParentPrivate(entries []mountEntry, path string) error {
	mi, err := mountOf(entries, path)
	if err != nil {
		return err
	}
	if !strings.Contains(mi.optional, "shared:") {
		return nil
	}
	if err := mount("", mi.mountpoint, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", mi.mountpoint, err)
	}
	return nil
}

type mountEntry struct {
	root, mountpoint, optional, fstype, source, superOpts string
}

// readMountinfo parses /proc/self/mountinfo. The moby/sys/mountinfo package
// is not used here because the init needs only a few fields and runs on the
// create hot path.
func readMountinfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 6 || len(fields) < sep+3 {
			continue
		}
		e := mountEntry{root: unescape(fields[3]), mountpoint: unescape(fields[4]), optional: strings.Join(fields[6:sep], " "), fstype: fields[sep+1], source: fields[sep+2]}
		if len(fields) > sep+3 {
			e.superOpts = fields[sep+3]
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountOf returns the mount entry whose mount point is the longest prefix of path.
func mountOf(entries []mountEntry, path string) (mountEntry, error) {
	var best mountEntry
	found := false
	for _, e := range entries {
		if e.mountpoint == path || e.mountpoint == "/" || strings.HasPrefix(path, e.mountpoint+"/") {
			if !found || len(e.mountpoint) >= len(best.mountpoint) {
				best, found = e, true
			}
		}
	}
	if !found {
		return best, fmt.Errorf("no mount found for %s", path)
	}
	return best, nil
}

// mountOne performs one entry of config.json's mounts. The destination is
// resolved inside the rootfs without following symlinks out of it, and the
// mount targets the resolved fd through /proc/self/fd, so a symlink swapped
// in after resolution cannot redirect it to the host.
func (in *initState) mountOne(root *os.File, m *specs.Mount, mountFd int) error {
	dest := cleanDest(m.Destination)
	// Most destinations (/proc, /dev/pts, /sys, ...) exist and have no
	// symlink on the way: then one openat2 gives both the target and the
	// proof that dest needs no resolving, where inRoot would lstat every
	// component and mkTarget open it again.
	target, err := openInRootNoSymlinks(root, dest)
	if err != nil {
		dest = inRoot(root, dest)
	}
	if target != nil {
		defer target.Close()
	}
	if err := checkProcMount(m, dest); err != nil {
		return err
	}
	opts := spec.ParseMountOptions(m.Options)
	bind := isBind(m)
	if m.Type == "cgroup" && !bind {
		return in.mountCgroupV1(root, m, dest, opts)
	}
	src := m.Source
	isDir := true
	if bind {
		if !filepath.IsAbs(src) {
			// Relative sources are relative to the bundle (our cwd).
			src = filepath.Join(in.cfg.Bundle, src)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("bind mount source %s: %w", m.Source, err)
		}
		isDir = fi.IsDir()
	}
	if target == nil {
		if target, err = mkTarget(root, dest, isDir); err != nil {
			return fmt.Errorf("mount %s: %w", dest, err)
		}
		defer target.Close()
	}
	tpath := "/proc/self/fd/" + strconv.Itoa(int(target.Fd()))
	if mountFd >= 0 {
		// A detached (idmapped) mount the parent prepared.
		err := unix.MoveMount(mountFd, "", int(target.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
		unix.Close(mountFd)
		if err != nil {
			return fmt.Errorf("attach idmapped mount %s on %s: %w", m.Source, dest, err)
		}
	} else if bind {
		flags := uintptr(unix.MS_BIND)
		if opts.Flags&unix.MS_REC != 0 {
			flags |= unix.MS_REC
		}
		if err := mount(src, tpath, "", flags, ""); err != nil {
			return fmt.Errorf("bind mount %s on %s: %w", m.Source, dest, err)
		}
	} else {
		typ := m.Type
		data := opts.Data
		if err := mount(m.Source, tpath, typ, opts.Flags, data); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", m.Source, typ, dest, err)
		}
	}
	// Reopen the now-mounted target so propagation and attributes apply to
	// the new mount, not the one underneath.
	mounted, err := openInRoot(root, dest)
	if err != nil {
		return fmt.Errorf("reopen mount %s: %w", dest, err)
	}
	defer mounted.Close()
	mpath := "/proc/self/fd/" + strconv.Itoa(int(mounted.Fd()))
	if bind {
		// A bind mount ignores other flags; they need a remount of the
		// new mount (mpath, not tpath, which is the dir underneath).
		if rem := opts.Flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); rem != 0 {
			if err := remountBind(mpath, rem); err != nil {
				return fmt.Errorf("remount %s: %w", dest, err)
			}
		}
	}
	for _, p := range opts.Propagation {
		if err := mount("", mpath, "", p, ""); err != nil {
			return fmt.Errorf("set propagation on %s: %w", dest, err)
		}
	}
	if opts.RecAttrSet != 0 || opts.RecAttrClr != 0 {
		attr := &unix.MountAttr{Attr_set: opts.RecAttrSet, Attr_clr: opts.RecAttrClr}
		if err := unix.MountSetattr(int(mounted.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
			return fmt.Errorf("set recursive mount attributes on %s: %w", dest, err)
		}
	}
	return nil
}

// remountBind applies flags to an existing bind mount, keeping the flags the
// kernel locks (nosuid, nodev, noexec, atime) from the source mount, which a
// remount may not clear.
func remountBind(path string, flags uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err == nil {
		flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	}
	return mount("", path, "", unix.MS_BIND|unix.MS_REMOUNT|flags, "")
}

// remountInRoot remounts the mount now at dest (inside root) with flags.
func remountInRoot(root *os.File, dest string, flags uintptr) error {
	f, err := openInRoot(root, dest)
	if err != nil {
		return err
	}
	defer f.Close()
	return remountBind("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), flags)
}

// inRoot resolves the symlinks in dest as if root were "/". A destination
// may go through a symlink whose target does not exist yet (a dangling
// absolute link, or one climbing above "/"); runc resolves such links this
// way too. The result has no symlinks left, so the race-safe handle
// functions can create it; if a symlink is swapped in afterwards they
// still refuse to leave the root.
func inRoot(root *os.File, dest string) string {
	resolved, err := securejoin.SecureJoin(root.Name(), dest)
	if err != nil {
		return dest
	}
	rel, err := filepath.Rel(root.Name(), resolved)
	if err != nil || strings.HasPrefix(rel, "..") {
		return dest
	}
	return filepath.Clean("/" + rel)
}

// mkTarget creates dest inside root (a directory, or an empty file for a
// file bind mount) and returns an O_PATH handle to it.
func mkTarget(root *os.File, dest string, isDir bool) (*os.File, error) {
	// Most targets (/proc, /dev, /sys/fs/cgroup/...) exist: one openat2
	// resolves them, where inRoot would lstat every component first.
	if f, err := openInRoot(root, dest); err == nil {
		return f, nil
	}
	dest = inRoot(root, dest)
	if isDir {
		return mkdirAllInRoot(root, dest, 0o755)
	}
	if f, err := openInRoot(root, dest); err == nil {
		return f, nil
	}
	parent, err := mkdirAllInRoot(root, filepath.Dir(dest), 0o755)
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	fd, err := unix.Openat(int(parent.Fd()), filepath.Base(dest), unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0o644)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, err
	}
	if err == nil {
		unix.Close(fd)
	}
	return openInRoot(root, dest)
}

// mountCgroupV1 gives the container a cgroupfs at dest. Without a cgroup
// namespace it bind-mounts the container's own cgroup of each hierarchy, as
// runc does; with one it mounts fresh cgroupfs instances, whose root the
// kernel already scopes to the namespace.
func (in *initState) mountCgroupV1(root *os.File, m *specs.Mount, dest string, opts spec.MountOptions) error {
	entries := in.hostMounts
	own, err := ownCgroups()
	if err != nil {
		return err
	}
	v2Only := true
	for _, e := range entries {
		if e.fstype == "cgroup" {
			v2Only = false
		}
	}
	if v2Only {
		// A pure v2 host: a "cgroup" mount means cgroup2, as runc does.
		m2 := *m
		m2.Type = "cgroup2"
		return in.mountCgroup2(root, &m2, dest, opts, entries, own)
	}
	target, err := mkTarget(root, dest, true)
	if err != nil {
		return fmt.Errorf("mount %s: %w", dest, err)
	}
	tpath := "/proc/self/fd/" + strconv.Itoa(int(target.Fd()))
	err = mount("tmpfs", tpath, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755")
	target.Close()
	if err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dest, err)
	}
	// Everything below goes into the tmpfs we just mounted, which nobody
	// else can have put a symlink in: work relative to its root, one
	// mkdirat and openat per hierarchy, instead of resolving dest/name
	// from the rootfs (openat2, then securejoin's lstat of every
	// component) several times over. ~10 hierarchies here.
	tmpfs, err := openInRoot(root, dest)
	if err != nil {
		return fmt.Errorf("mount %s: %w", dest, err)
	}
	defer tmpfs.Close()
	tfd := int(tmpfs.Fd())
	flags := opts.Flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT)
	for _, e := range entries {
		if (e.fstype != "cgroup" && e.fstype != "cgroup2") || !strings.HasPrefix(e.mountpoint, "/sys/fs/cgroup/") {
			continue
		}
		name := filepath.Base(e.mountpoint)
		if err := in.mountHierarchy(tfd, e, name, flags, own); err != nil {
			return fmt.Errorf("mount cgroup %s on %s/%s: %w", name, dest, name, err)
		}
	}
	if flags&unix.MS_RDONLY != 0 {
		if err := mount("", "/proc/self/fd/"+strconv.Itoa(tfd), "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755"); err != nil {
			return fmt.Errorf("remount %s read-only: %w", dest, err)
		}
	}
	return nil
}

// mountHierarchy mounts v1 hierarchy e (or the hybrid cgroup2) at name in
// the tmpfs whose root is tfd; own is ownCgroups().
func (in *initState) mountHierarchy(tfd int, e mountEntry, name string, flags uintptr, own map[string]string) error {
	if err := unix.Mkdirat(tfd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	sub, err := unix.Openat(tfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	spath := "/proc/self/fd/" + strconv.Itoa(sub)
	if in.cfg.CgroupNS {
		data := ""
		if e.fstype == "cgroup" {
			data = cgroupSubsystems(e.superOpts)
		}
		err = mount("cgroup", spath, e.fstype, flags, data)
		unix.Close(sub)
		return err
	}
	// Paths in /proc/self/cgroup are relative to the hierarchy root, the
	// mount may show only a subtree of it.
	rel := strings.TrimPrefix(own[cgroupKey(e)], strings.TrimSuffix(e.root, "/"))
	err = mount(filepath.Join(e.mountpoint, rel), spath, "", unix.MS_BIND|unix.MS_REC, "")
	unix.Close(sub)
	if err != nil || flags == 0 {
		return err
	}
	// The fd above is the directory under the new mount: look name up
	// again to reach the bind mount itself.
	if sub, err = unix.Openat(tfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
		return err
	}
	defer unix.Close(sub)
	return remountBind("/proc/self/fd/"+strconv.Itoa(sub), flags)
}

func (in *initState) mountCgroup2(root *os.File, m *specs.Mount, dest string, opts spec.MountOptions, entries []mountEntry, own map[string]string) error {
	target, err := mkTarget(root, dest, true)
	if err != nil {
		return fmt.Errorf("mount %s: %w", dest, err)
	}
	defer target.Close()
	tpath := "/proc/self/fd/" + strconv.Itoa(int(target.Fd()))
	flags := opts.Flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT)
	err = mount("cgroup2", tpath, "cgroup2", flags, "")
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY) {
		// Without a cgroup namespace the kernel may refuse a fresh
		// instance; bind the container's own cgroup instead.
		for _, e := range entries {
			if e.fstype == "cgroup2" {
				rel := strings.TrimPrefix(own[""], strings.TrimSuffix(e.root, "/"))
				if err = mount(filepath.Join(e.mountpoint, rel), tpath, "", unix.MS_BIND|unix.MS_REC, ""); err == nil && flags != 0 {
					err = remountInRoot(root, dest, flags)
				}
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("mount cgroup2 on %s: %w", dest, err)
	}
	return nil
}

// ownCgroups maps each hierarchy key (its controller list, "name=x" for
// named ones, "" for v2) to this process's cgroup path in it.
func ownCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 {
			out[parts[1]] = parts[2]
		}
	}
	return out, nil
}

// cgroupSubsystems extracts the controllers (and name=) from super options.
func cgroupSubsystems(superOpts string) string {
	var keep []string
	for _, o := range strings.Split(superOpts, ",") {
		switch {
		case o == "rw" || o == "ro" || strings.HasPrefix(o, "release_agent=") || o == "xattr" || o == "clone_children" || o == "noprefix":
		default:
			keep = append(keep, o)
		}
	}
	return strings.Join(keep, ",")
}

func cgroupKey(e mountEntry) string {
	if e.fstype == "cgroup2" {
		return ""
	}
	return cgroupSubsystems(e.superOpts)
}

// pivotRoot makes rootfs the process root and detaches the old root, using
// pivot_root(".", ".") so no directory for the old root is needed inside
// the container.
func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open old root: %w", err)
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open new root: %w", err)
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return fmt.Errorf("chdir to new root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", rootfs, err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return fmt.Errorf("chdir to old root: %w", err)
	}
	// The old root must not propagate the unmount back to the host.
	if err := mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir to /: %w", err)
	}
	return nil
}

// moveRoot is --no-pivot: for a rootfs on a ramdisk, where pivot_root fails.
func moveRoot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return fmt.Errorf("chdir to rootfs: %w", err)
	}
	if err := mount(rootfs, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move rootfs to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir to /: %w", err)
	}
	return nil
}

// finalizeRootfs applies readonlyPaths, maskedPaths and root.readonly, in
// the container's own view after pivot_root.
func finalizeRootfs(s *specs.Spec) error {
	if s.Linux != nil {
		for _, p := range s.Linux.ReadonlyPaths {
			if err := readonlyPath(p); err != nil {
				return err
			}
		}
		for _, p := range s.Linux.MaskedPaths {
			if err := maskPath(p); err != nil {
				return err
			}
		}
	}
	if s.Root != nil && s.Root.Readonly {
		if err := remountBind("/", unix.MS_RDONLY); err != nil {
			return fmt.Errorf("remount root read-only: %w", err)
		}
	}
	return nil
}

func readonlyPath(p string) error {
	if err := mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("bind mount readonly path %s: %w", p, err)
	}
	if err := remountBind(p, unix.MS_RDONLY|unix.MS_REC); err != nil {
		return fmt.Errorf("remount readonly path %s: %w", p, err)
	}
	return nil
}

func maskPath(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("stat masked path %s: %w", p, err)
	}
	if fi.IsDir() {
		err = mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "")
	} else {
		err = mount("/dev/null", p, "", unix.MS_BIND, "")
	}
	if err != nil {
		return fmt.Errorf("mask path %s: %w", p, err)
	}
	return nil
}

func writeSysctls(sysctls map[string]string) error {
	for k, v := range sysctls {
		p := filepath.Clean("/proc/sys/" + strings.ReplaceAll(k, ".", "/"))
		if !strings.HasPrefix(p, "/proc/sys/") {
			return fmt.Errorf("invalid sysctl name %q", k)
		}
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("write sysctl %s: %w", k, err)
		}
	}
	return nil
}

func hasNS(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

func chrootOnly(rootfs string) error {
	if err := unix.Chroot(rootfs); err != nil {
		return fmt.Errorf("chroot %s: %w", rootfs, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir to /: %w", err)
	}
	return nil
}

// procFilesAllowed are the /proc files a bind mount may cover: the ones
// lxcfs serves to make /proc reflect the container's limits.
var procFilesAllowed = map[string]bool{
	"/proc/cpuinfo": true, "/proc/diskstats": true, "/proc/meminfo": true,
	"/proc/stat": true, "/proc/swaps": true, "/proc/uptime": true,
	"/proc/loadavg": true, "/proc/slabinfo": true, "/proc/net/dev": true,
	"/proc/sys/kernel/ns_last_pid": true,
}

// checkProcMount refuses mounts inside /proc (CVE-2019-19921): covering
// /proc/sys or /proc/self/attr with something else would turn the
// runtime's own writes there (sysctls, LSM labels) into writes to that
// something, such as a host directory. dest is already resolved inside the
// rootfs, so a symlink such as /data -> /proc cannot hide it.
func checkProcMount(m *specs.Mount, dest string) error {
	if dest != "/proc" && !strings.HasPrefix(dest, "/proc/") {
		return nil
	}
	if dest == "/proc" && m.Type == "proc" {
		return nil
	}
	if dest == "/proc" && isBind(m) {
		// Binding another procfs there (rootless setups do) is fine.
		var st unix.Statfs_t
		if unix.Statfs(m.Source, &st) == nil && st.Type == unix.PROC_SUPER_MAGIC {
			return nil
		}
	}
	if procFilesAllowed[dest] && isBind(m) {
		return nil
	}
	return fmt.Errorf("%q cannot be mounted because it is inside /proc", m.Destination)
}
