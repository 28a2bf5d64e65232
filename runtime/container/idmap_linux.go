package container

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// UsernsHoldArg is the hidden argv[1] of a helper process that only keeps
// a fresh user namespace alive until its stdin closes (see idmappedMounts).
const UsernsHoldArg = "userns-hold"

// idmappedMounts prepares a detached, id-mapped clone of the source of
// every bind mount that carries uidMappings/gidMappings, and returns the
// mount fds by mount index. It runs in the parent because marking a mount
// idmapped needs CAP_SYS_ADMIN in the user namespace of the source
// filesystem, usually the host's, which the container init no longer has;
// the init attaches the fd with move_mount.
func idmappedMounts(s *specs.Spec, bundle string) (map[int]*os.File, error) {
	var out map[int]*os.File
	for i, m := range s.Mounts {
		if len(m.UIDMappings) == 0 && len(m.GIDMappings) == 0 {
			continue
		}
		if out == nil {
			out = map[int]*os.File{}
		}
		f, err := idmappedMount(m, bundle)
		if err != nil {
			for _, f := range out {
				f.Close()
			}
			return nil, fmt.Errorf("idmapped mount %s: %w", m.Destination, err)
		}
		out[i] = f
	}
	return out, nil
}

func idmappedMount(m specs.Mount, bundle string) (*os.File, error) {
	src := m.Source
	if !filepath.IsAbs(src) {
		src = filepath.Join(bundle, src)
	}
	userns, err := newUserns(m.UIDMappings, m.GIDMappings)
	if err != nil {
		return nil, err
	}
	defer userns.Close()
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC
	recursive := false
	for _, o := range m.Options {
		if o == "rbind" || o == "ridmap" {
			recursive = true
		}
	}
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, uint(flags))
	if err != nil {
		return nil, fmt.Errorf("clone %s: %w", src, err)
	}
	attrFlags := unix.AT_EMPTY_PATH
	if recursive {
		attrFlags |= unix.AT_RECURSIVE
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", uint(attrFlags), attr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set id mapping on %s: %w", src, err)
	}
	return os.NewFile(uintptr(fd), "idmapped:"+src), nil
}

// newUserns returns an fd of a new user namespace with the given maps. The
// kernel only creates one with a process in it, so a helper (this binary
// in its userns-hold mode) lives until the namespace is opened.
func newUserns(uids, gids []specs.LinuxIDMapping) (*os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, UsernsHoldArg)
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: idMaps(uids),
		GidMappings: idMaps(gids),
		Pdeathsig:   syscall.SIGKILL,
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start user namespace helper: %w", err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	f, err := os.Open("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/user")
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("open helper user namespace: %w", err)
	}
	return f, nil
}

// UsernsHold is the helper's body: wait for stdin to close, then exit.
func UsernsHold() {
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
