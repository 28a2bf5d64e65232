// Package linux holds small Linux helpers shared by the runtime's parent and
// init sides: /proc parsing and syscall wrappers that retry on EINTR.
package linux

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ProcStat is the part of /proc/<pid>/stat the runtime needs.
type ProcStat struct {
	// State is the one-letter process state (R, S, D, Z, T, X, ...).
	State byte
	// StartTime is the start time in clock ticks after boot; together with
	// the pid it identifies a process across pid reuse.
	StartTime uint64
}

// Stat reads /proc/<pid>/stat. A missing process returns an error satisfying
// errors.Is(err, os.ErrNotExist).
func Stat(pid int) (ProcStat, error) {
	var st ProcStat
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return st, err
	}
	// The command name is in parentheses and may itself contain ") ", so
	// split at the last one.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return st, fmt.Errorf("parse /proc/%d/stat: no command field", pid)
	}
	fields := bytes.Fields(b[i+2:])
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return st, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	st.State = fields[0][0]
	st.StartTime, err = strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return st, fmt.Errorf("parse /proc/%d/stat start time: %w", pid, err)
	}
	return st, nil
}

// Alive reports whether pid is the same live (not zombie, not dead) process
// that started at startTime.
func Alive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := Stat(pid)
	if err != nil {
		return false
	}
	if st.State == 'Z' || st.State == 'X' || st.State == 'x' {
		return false
	}
	return st.StartTime == startTime
}

// WaitExit blocks until the process behind pid exits (becomes a zombie or is
// reaped), without being its parent, using a pidfd. It returns false if the
// timeout (ms, -1 for none) expires first.
func WaitExit(pid int, timeoutMs int) (bool, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return true, nil
		}
		return false, fmt.Errorf("open pidfd for %d: %w", pid, err)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, timeoutMs)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll pidfd for %d: %w", pid, err)
		}
		return n > 0, nil
	}
}

// Retry runs fn until it does not fail with EINTR.
func Retry(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}
