package cgroups

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// NotifyOOM watches the container's memory cgroup for OOM events, as runc's
// `events` does:
//
//   - v1 (and hybrid, where memory is a v1 controller): an eventfd registered
//     for memory.oom_control through cgroup.event_control; every read of the
//     eventfd is one notification. The kernel also signals the eventfd when the
//     cgroup is removed, which ends the watch.
//   - v2: inotify on memory.events; a notification is sent each time its
//     oom_kill counter grows past the largest value seen (the counter at the
//     time of the call is the baseline, so earlier kills are not reported).
//     cgroup.events is watched too, and the watch ends once the cgroup has no
//     processes left (populated 0), as runc's does.
//
// The returned channel receives one value per notification (several kernel
// events that arrive before the reader wakes up may be merged into one) and
// is closed when the watch ends: the cgroup went away (v2: or emptied), a
// read failed, or ctx was cancelled. The watch blocks in read(2) through the
// Go poller; cancelling ctx closes its descriptor.
func (m *manager) NotifyOOM(ctx context.Context) (<-chan struct{}, error) {
	if dir, ok := m.paths["memory"]; ok {
		return notifyOOMV1(ctx, dir)
	}
	if dir, ok := m.paths[""]; ok && fileExists(dir, "memory.events") {
		return notifyOOMV2(ctx, dir)
	}
	return nil, errors.New("oom notifications: the container has no memory cgroup")
}

// notifyOOMV1 registers an eventfd for memory.oom_control in dir.
func notifyOOMV1(ctx context.Context, dir string) (<-chan struct{}, error) {
	ctl, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return nil, fmt.Errorf("oom notifications: %w", err)
	}
	// The kernel only uses the control file while registering.
	defer ctl.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("oom notifications: eventfd: %w", err)
	}
	// Non-blocking, so the os.File goes through the poller and Close
	// interrupts a pending Read.
	ev := os.NewFile(uintptr(efd), "eventfd")
	if err := writeFile(dir, "cgroup.event_control", fmt.Sprintf("%d %d", efd, ctl.Fd())); err != nil {
		ev.Close()
		return nil, fmt.Errorf("oom notifications: %w", err)
	}
	ch := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { ev.Close() })
	go func() {
		defer close(ch)
		defer stop()
		defer ev.Close()
		var buf [8]byte
		for {
			if _, err := io.ReadFull(ev, buf[:]); err != nil {
				return
			}
			// Removing the cgroup signals the eventfd too; that is the end,
			// not an OOM.
			if _, err := os.Lstat(filepath.Join(dir, "cgroup.event_control")); err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// notifyOOMV2 watches memory.events (and cgroup.events, when present) in dir
// with inotify.
func notifyOOMV2(ctx context.Context, dir string) (<-chan struct{}, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("oom notifications: inotify: %w", err)
	}
	in := os.NewFile(uintptr(fd), "inotify")
	memWd, err := unix.InotifyAddWatch(fd, filepath.Join(dir, "memory.events"), unix.IN_MODIFY)
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("oom notifications: watch %s: %w", filepath.Join(dir, "memory.events"), err)
	}
	cgWd := -1
	if fileExists(dir, "cgroup.events") {
		if cgWd, err = unix.InotifyAddWatch(fd, filepath.Join(dir, "cgroup.events"), unix.IN_MODIFY); err != nil {
			in.Close()
			return nil, fmt.Errorf("oom notifications: watch %s: %w", filepath.Join(dir, "cgroup.events"), err)
		}
	}
	// The baseline is read after the watch is in place, so a kill after it
	// always produces an IN_MODIFY that finds a larger count.
	w := &oomWatchV2{dir: dir}
	if _, err := w.oomKilled(); err != nil {
		in.Close()
		return nil, fmt.Errorf("oom notifications: %w", err)
	}
	ch := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { in.Close() })
	go func() {
		defer close(ch)
		defer stop()
		defer in.Close()
		send := func() bool {
			select {
			case ch <- struct{}{}:
				return true
			case <-ctx.Done():
				return false
			}
		}
		// checkKills sends a notification if the counter grew; false ends
		// the watch.
		checkKills := func() bool {
			grew, err := w.oomKilled()
			if err != nil {
				return false
			}
			return !grew || send()
		}
		if cgWd >= 0 && !w.populated() {
			checkKills()
			return
		}
		buf := make([]byte, 4096)
		for {
			n, err := in.Read(buf)
			if err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				wd := int(int32(binary.NativeEndian.Uint32(buf[off:])))
				mask := binary.NativeEndian.Uint32(buf[off+4:])
				nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
				off += unix.SizeofInotifyEvent + nameLen
				switch {
				case mask&unix.IN_Q_OVERFLOW != 0:
					// Events were dropped: look at both files again.
					if !checkKills() {
						return
					}
					if cgWd >= 0 && !w.populated() {
						checkKills()
						return
					}
				case mask&unix.IN_IGNORED != 0:
					// The watched file went away (cgroup removed).
					checkKills()
					return
				case wd == memWd && mask&unix.IN_MODIFY != 0:
					if !checkKills() {
						return
					}
				case wd == cgWd && mask&unix.IN_MODIFY != 0:
					if !w.populated() {
						// The last process may have been the one killed;
						// report a kill that raced the exit.
						checkKills()
						return
					}
				}
			}
		}
	}()
	return ch, nil
}

// oomWatchV2 tracks memory.events' oom_kill counter.
type oomWatchV2 struct {
	dir  string
	last uint64
}

// oomKilled reads oom_kill and reports whether it exceeds every value seen
// before. A file without the key (seen mid-rewrite, or on a kernel without
// the counter) changes nothing.
func (w *oomWatchV2) oomKilled() (bool, error) {
	b, err := os.ReadFile(filepath.Join(w.dir, "memory.events"))
	if err != nil {
		return false, err
	}
	v, ok := lookupCounter(string(b), "oom_kill")
	if !ok || v <= w.last {
		return false, nil
	}
	w.last = v
	return true, nil
}

// populated reports whether cgroup.events still says the cgroup has
// processes; a file that cannot be read means the cgroup is gone.
func (w *oomWatchV2) populated() bool {
	b, err := os.ReadFile(filepath.Join(w.dir, "cgroup.events"))
	if err != nil {
		return false
	}
	v, ok := lookupCounter(string(b), "populated")
	return !ok || v != 0
}

// lookupCounter finds "key value" in a flat-keyed cgroup file.
func lookupCounter(s, key string) (uint64, bool) {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || f[0] != key {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		return v, err == nil
	}
	return 0, false
}
