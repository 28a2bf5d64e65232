package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/manager/ociruntime"
)

// reconcile makes c's record agree with reality when nobody owns the container (its
// lock is free): a "created" or "running" record whose init is gone becomes "stopped"
// with a finished time; one whose init lives on without a monitor is flagged; leftover
// runtime state of a stopped container is deleted; an abandoned --rm container is
// removed (then ErrNotFound is returned).
func (m *Manager) reconcile(ctx context.Context, c *Container) (*Container, error) {
	rtState := filepath.Join(c.RuntimeRoot, c.ID)
	if c.Status == StatusStopped {
		if _, err := os.Stat(rtState); err != nil {
			return c, nil
		}
	}
	l, ok, err := tryLock(c.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("container %s: %w", c.ID, errdefs.ErrNotFound)
		}
		return nil, err
	}
	if !ok {
		return c, nil // its owner is alive and keeps the record true
	}
	defer l.release()
	// Re-read under the lock: the owner may have finished just before we took it.
	fresh, err := loadMeta(c.dir)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.ID, errdefs.ErrNotFound)
	}
	c = fresh
	rt := c.runtime()
	now := time.Now().UTC()
	if c.Status != StatusStopped {
		st, err := rt.State(ctx, c.ID)
		switch {
		case err != nil && !errors.Is(err, errdefs.ErrNotFound):
			return c, nil // the runtime is unusable now; judge again next time
		case err == nil && (st.Status == "running" || st.Status == "paused"):
			// The monitor died after start, possibly before it recorded "running":
			// the container is adopted as running rather than lost.
			if c.Status != StatusRunning {
				c.Status, c.Pid, c.Started = StatusRunning, st.Pid, now
			}
			if c.Error == "" {
				c.Error = "monitor died: the container runs on but its output is no longer logged"
				m.log.Warn().Str("id", c.ID).Msg(c.Error)
				_ = c.save()
			}
			return c, nil
		}
		// The init is gone, or it never got past create: either way the container
		// is over and its exit status died with the monitor.
		if c.Status == StatusCreated || err == nil && st.Status == "created" {
			c.Error = "creation interrupted: cubo or its monitor was killed before the container started"
		} else {
			c.Error = "monitor died: exit status unknown"
		}
		c.Status = StatusStopped
		c.Finished = now
		c.ExitCode = -1
		c.Pid = 0
		if err := c.save(); err != nil {
			return nil, err
		}
		m.log.Info().Str("id", c.ID).Msg("reconciled: container stopped")
		if err := m.teardownNetwork(ctx, c.ID); err != nil {
			m.log.Warn().Err(err).Str("id", c.ID).Msg("reconcile")
		}
	}
	if _, err := os.Stat(rtState); err == nil {
		_ = rt.Delete(ctx, c.ID, true)
	}
	if c.AutoRemove {
		if err := m.destroyFiles(c); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("container %s: %w", c.ID, errdefs.ErrNotFound)
	}
	return c, nil
}

// ParseSignal parses a signal name ("TERM", "SIGTERM") or number.
func ParseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return unix.SIGTERM, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	// Real-time signals as images name them; 34 and 64 are glibc's SIGRTMIN and SIGRTMAX.
	for base, n := range map[string]int{"SIGRTMIN+": 34, "SIGRTMAX-": 64} {
		if off, ok := strings.CutPrefix(name, base); ok {
			if k, err := strconv.Atoi(off); err == nil && k >= 0 && k <= 30 {
				if base == "SIGRTMIN+" {
					return syscall.Signal(n + k), nil
				}
				return syscall.Signal(n - k), nil
			}
		}
	}
	return 0, fmt.Errorf("signal %q: %w", s, errdefs.ErrInvalidArgument)
}

// Stop stops a running container: its StopSignal (SIGTERM by default), then SIGKILL to
// every process once timeout has passed; force sends SIGKILL at once. It returns when the
// container is stopped and its monitor has recorded the exit. Stopping a stopped
// container does nothing.
func (m *Manager) Stop(ctx context.Context, ref string, timeout time.Duration, force bool) (*Container, error) {
	c, err := m.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	if c.Status == StatusStopped {
		return c, nil
	}
	sig, err := ParseSignal(c.StopSignal)
	if err != nil || force {
		sig = unix.SIGKILL
	}
	rt := c.runtime()
	if err := rt.Kill(ctx, c.ID, sig, sig == unix.SIGKILL); err != nil && !gone(err) {
		return nil, fmt.Errorf("stop %s: %w", c.ID, err)
	}
	done := m.waitOwner(ctx, c)
	if sig != unix.SIGKILL {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-done:
			return m.stopped(ctx, c)
		case <-t.C:
			m.log.Info().Str("id", c.ID).Msg("stop timeout, killing")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err := rt.Kill(ctx, c.ID, unix.SIGKILL, true); err != nil && !gone(err) {
			return nil, fmt.Errorf("stop %s: %w", c.ID, err)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return m.stopped(ctx, c)
}

// stopped reloads c once its process is gone and releases its network, which its
// monitor normally did already (Teardown is idempotent); without a monitor nobody else
// would.
func (m *Manager) stopped(ctx context.Context, c *Container) (*Container, error) {
	nc, err := m.reload(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := m.teardownNetwork(ctx, c.ID); err != nil {
		return nil, err
	}
	return nc, nil
}

func (m *Manager) reload(ctx context.Context, c *Container) (*Container, error) {
	nc, err := m.load(ctx, c.ID)
	if errors.Is(err, errdefs.ErrNotFound) {
		c.Status = StatusStopped
		return c, nil // removed by --rm
	}
	return nc, err
}

// gone tells whether a runtime error means the container already stopped or vanished.
func gone(err error) bool {
	return errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrFailedPrecondition)
}

// waitOwner returns a channel closed when c's monitor has finished (its lock is free)
// and, for a container without a monitor, when the runtime reports it stopped.
func (m *Manager) waitOwner(ctx context.Context, c *Container) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		l, err := waitLock(c.dir)
		if err != nil {
			return
		}
		l.release()
		// Without a monitor nobody will wake us: ask the runtime until the init is gone.
		for {
			st, err := c.runtime().State(ctx, c.ID)
			if err != nil || st.Status == "stopped" || ctx.Err() != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return done
}

// Remove removes a container: its runtime state and cgroups, the rootfs mount, its
// directory and its name. A running container is refused unless force, which kills it
// first.
func (m *Manager) Remove(ctx context.Context, ref string, force bool) error {
	c, err := m.Get(ctx, ref)
	if err != nil {
		return err
	}
	if c.Status != StatusStopped {
		if !force {
			return fmt.Errorf("container %s is %s: stop it first or use --force: %w", c.Name, c.Status, errdefs.ErrFailedPrecondition)
		}
		if _, err := m.Stop(ctx, c.ID, 0, true); err != nil {
			return err
		}
	}
	l, err := waitLock(c.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // its monitor removed it (--rm)
		}
		return err
	}
	defer l.release()
	if _, err := os.Stat(filepath.Join(c.RuntimeRoot, c.ID)); err == nil {
		if err := c.runtime().Delete(ctx, c.ID, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return fmt.Errorf("delete runtime state of %s: %w", c.ID, err)
		}
	}
	removeCgroups(c.dir)
	return m.destroyFiles(c)
}

// ExecOpts shape a process run in a running container.
type ExecOpts = ociruntime.ExecOpts

// Exec runs args in a running container with the given stdio and returns the process's
// exit status as *ociruntime.ExitError when non-zero.
func (m *Manager) Exec(ctx context.Context, ref string, args []string, opts *ExecOpts) error {
	c, err := m.Get(ctx, ref)
	if err != nil {
		return err
	}
	if c.Status != StatusRunning {
		return fmt.Errorf("container %s is not running: %w", c.Name, errdefs.ErrFailedPrecondition)
	}
	if len(args) == 0 {
		return fmt.Errorf("exec: no command: %w", errdefs.ErrInvalidArgument)
	}
	return c.runtime().Exec(ctx, c.ID, args, opts)
}
