package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/runtime/cgroups"
	"github.com/cubo-dev/cubo/runtime/internal/hooks"
	"github.com/cubo-dev/cubo/runtime/internal/linux"
)

// Start releases a created container's init to exec the user process, then
// runs the poststart hooks.
func (c *Container) Start() error {
	lock, err := lockDir(c.dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	switch st := c.Status(); st {
	case Created:
	case Stopped:
		return errors.New("cannot start a container that has stopped")
	case Running:
		return errors.New("cannot start an already running container")
	default:
		return fmt.Errorf("cannot start a container in the %s state", st)
	}
	if c.Config.Process == nil {
		// The runtime spec allows creating a container without a process
		// (its namespaces can still be joined) but start must fail.
		_ = unix.Kill(c.InitPid, unix.SIGKILL)
		return errors.New("cannot start a container without a process (config.json has no process)")
	}
	if err := c.releaseFifo(); err != nil {
		return err
	}
	if c.Config.Hooks != nil && len(c.Config.Hooks.Poststart) > 0 {
		// The runtime spec makes a failing poststart hook a warning; the
		// other hooks and the container go on (runc kills it instead).
		c.warn(hooks.RunAll(c.Config.Hooks.Poststart, c.OCIState(Running), "poststart"))
	}
	return nil
}

// releaseFifo opens the exec fifo for reading, which unblocks the init's
// open for writing; the byte it then writes confirms it is on its way to
// exec. The init keeps its end open (close-on-exec) through the
// startContainer hooks, so the EOF that follows means the user process has
// been executed, or the init has died: only then may start run the poststart
// hooks and return. A pidfd in the same poll catches an init that dies
// instead.
func (c *Container) releaseFifo() error {
	path := filepath.Join(c.dir, fifoName)
	// The pidfd first: once the fifo is open the init may exec, finish and
	// be reaped by its parent (a fast `echo` under containerd) before we
	// would get to open it.
	pfd, err := unix.PidfdOpen(c.InitPid, 0)
	if err != nil {
		return fmt.Errorf("container init is gone: %w", err)
	}
	defer unix.Close(pfd)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return errors.New("cannot start an already running container")
		}
		return fmt.Errorf("open exec fifo: %w", err)
	}
	defer unix.Close(fd)
	// The init's byte. EAGAIN means its writer is there but the byte is not
	// (yet): poll again, unless the init is gone. It happened once in ~2000
	// parallel runs (8 at a time) without a known cause; the poll events go
	// into the error if it ever happens with the init gone.
	var b [1]byte
	for {
		revents, err := pollFifo(fd, pfd)
		if err != nil {
			return err
		}
		n, err := unix.Read(fd, b[:])
		if n == 1 {
			break
		}
		if err == unix.EAGAIN || err == unix.EINTR {
			if exited(pfd) {
				return fmt.Errorf("read exec fifo: %w (poll events: fifo %#x, init %#x)", err, revents[0], revents[1])
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("read exec fifo: %w", err)
		}
		return errors.New("cannot start a container that has stopped")
	}
	os.Remove(path)
	// Wait for the init's execve (or death) to close its end.
	for {
		if _, err := pollFifo(fd, pfd); err != nil {
			return err
		}
		n, err := unix.Read(fd, b[:])
		if n > 0 || err == unix.EAGAIN || err == unix.EINTR {
			if exited(pfd) {
				return nil
			}
			continue
		}
		return nil // EOF (or an error, which can only mean the same)
	}
}

// pollFifo waits until the exec fifo fd is readable or hung up, or the
// process behind pidfd pfd has exited, and returns what poll reported for
// each.
func pollFifo(fd, pfd int) ([2]int16, error) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(pfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return [2]int16{}, fmt.Errorf("wait for exec fifo: %w", err)
		}
		return [2]int16{fds[0].Revents, fds[1].Revents}, nil
	}
}

// exited says whether the process behind pidfd pfd has exited.
func exited(pfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, 0)
	return n > 0
}

// Signal sends sig to the init, or with all to every process in the
// container's cgroup.
func (c *Container) Signal(sig unix.Signal, all bool) error {
	st := c.Status()
	if st == Stopped {
		if all {
			// containerd sends `kill --all ID 9` after the init of a
			// shared-pid-namespace container exited; it must succeed.
			return c.signalCgroup(sig)
		}
		return ErrNotRunning
	}
	if all {
		return c.signalCgroup(sig)
	}
	if err := unix.Kill(c.InitPid, sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return ErrNotRunning
		}
		return fmt.Errorf("signal init %d: %w", c.InitPid, err)
	}
	if sig == unix.SIGKILL && st == Paused {
		// A frozen process cannot die until thawed.
		_ = c.setFrozen(false)
	}
	return nil
}

func (c *Container) signalCgroup(sig unix.Signal) error {
	if len(c.CgroupPaths) == 0 {
		return nil
	}
	m, err := cgroups.Load(c.CgroupPaths)
	if err != nil {
		return err
	}
	pids, err := m.GetAllPids()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("list container processes: %w", err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal %d: %w", pid, err)
		}
	}
	if sig == unix.SIGKILL {
		_ = c.setFrozen(false)
	}
	return nil
}

func (c *Container) setFrozen(frozen bool) error {
	m, err := cgroups.Load(c.CgroupPaths)
	if err != nil {
		return err
	}
	return m.Freeze(frozen)
}

// Pause freezes every process of the container.
func (c *Container) Pause() error {
	switch c.Status() {
	case Running, Created:
		return c.setFrozen(true)
	default:
		return ErrNotRunning
	}
}

// Resume thaws a paused container.
func (c *Container) Resume() error {
	if c.Status() != Paused {
		return ErrNotPaused
	}
	return c.setFrozen(false)
}

// Delete destroys the container. A created container is killed first (as
// runc does; containerd relies on it). A running or paused one is refused
// unless force.
func (c *Container) Delete(force bool) error {
	lock, err := lockDir(c.dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	switch st := c.Status(); st {
	case Stopped:
	case Created:
		if err := c.killAndWait(); err != nil {
			return err
		}
	default:
		if !force {
			return fmt.Errorf("cannot delete container %s that is not stopped: %s", c.ID, st)
		}
		if err := c.killAndWait(); err != nil {
			return err
		}
	}
	return c.destroy()
}

func (c *Container) killAndWait() error {
	if err := unix.Kill(c.InitPid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill init %d: %w", c.InitPid, err)
	}
	if c.frozen() {
		_ = c.setFrozen(false)
	}
	exited, err := linux.WaitExit(c.InitPid, 10000)
	if err != nil {
		return err
	}
	if !exited {
		return fmt.Errorf("container init %d did not exit within 10s of SIGKILL", c.InitPid)
	}
	return nil
}

// destroy removes what the container holds on the host: leftover
// processes (when it shares a pid namespace), its cgroup and its state
// directory, then runs the poststop hooks.
func (c *Container) destroy() error {
	var errs []string
	if len(c.CgroupPaths) > 0 {
		if m, err := cgroups.Load(c.CgroupPaths); err == nil {
			if !c.OwnPidNS {
				if pids, err := m.GetAllPids(); err == nil {
					for _, pid := range pids {
						_ = unix.Kill(pid, unix.SIGKILL)
					}
					for _, pid := range pids {
						_, _ = linux.WaitExit(pid, 10000)
					}
				}
			}
			if err := m.Destroy(); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Sprintf("remove state dir: %v", err))
	}
	if c.Config != nil && c.Config.Hooks != nil && len(c.Config.Hooks.Poststop) > 0 {
		// A failing poststop hook is a warning (runtime spec).
		c.warn(hooks.RunAll(c.Config.Hooks.Poststop, c.OCIState(Stopped), "poststop"))
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Destroy removes a stopped container without locking; for the process
// that created it and waited for its init (foreground run).
func (c *Container) Destroy() error { return c.destroy() }

// List returns the IDs of all containers under root.
func List(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}
