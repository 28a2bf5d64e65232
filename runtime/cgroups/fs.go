package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// writeFile writes one value to a cgroup file. It never creates the file:
// a missing control file means the controller or feature is absent, and
// creating it (possible only on a fake hierarchy) would hide that.
func writeFile(dir, file, data string) error {
	p := filepath.Join(dir, file)
	for {
		err := writeOnce(p, data)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write %q to %s: %w", data, p, err)
		}
		return nil
	}
}

// writeOnce uses the syscalls directly: os.OpenFile would also set the fd
// non-blocking, try to add it to the netpoller (which refuses a regular file)
// and set it back, four extra syscalls per write for the 20-odd writes of a
// create.
func writeOnce(p, data string) error {
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: p, Err: err}
	}
	// cgroupfs parses each write(2) separately, so one call per value.
	n, err := unix.Write(fd, []byte(data))
	if err == nil && n != len(data) {
		err = fmt.Errorf("short write (%d of %d bytes)", n, len(data))
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return &fs.PathError{Op: "write", Path: p, Err: err}
	}
	return nil
}

func readFile(dir, file string) (string, error) {
	p := filepath.Join(dir, file)
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func fileExists(dir, file string) bool {
	_, err := os.Stat(filepath.Join(dir, file))
	return err == nil
}

// readUint reads a single number; "max" reads as maxUint (kernel "no limit").
func readUint(dir, file string) (uint64, error) {
	s, err := readFile(dir, file)
	if err != nil {
		return 0, err
	}
	return parseUint(s, filepath.Join(dir, file))
}

const maxUint = ^uint64(0)

func parseUint(s, what string) (uint64, error) {
	if s == "max" {
		return maxUint, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// v1 reports some unset limits as negative numbers or values that
		// overflow int64 (memory.limit_in_bytes on some kernels).
		if iv, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && iv < 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("parse %q from %s: %w", s, what, err)
	}
	return v, nil
}

// readKeyValues parses "key value" lines (memory.stat, cpu.stat, ...).
func readKeyValues(dir, file string) (map[string]uint64, error) {
	s, err := readFile(dir, file)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := parseUint(f[1], filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		out[f[0]] = v
	}
	return out, nil
}

// rmdir is a variable so fake-hierarchy tests, whose directories hold plain
// files, can remove them; cgroupfs directories rmdir while "non-empty".
var rmdir = unix.Rmdir

// removeTree removes a cgroup directory and its child cgroups, deepest first.
func removeTree(dir string) error {
	// A container's cgroup rarely has children: try the rmdir first, and
	// list the directory (~30 control files in each v1 hierarchy) only
	// when the kernel says it is busy, which is how cgroupfs reports
	// child cgroups as well as tasks not yet released.
	switch err := rmdir(dir); {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EINTR):
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return rmdirRetry(dir)
}

// rmdirRetry retries EBUSY because the kernel releases a cgroup a little after
// its last task exited (and after a thaw), so an rmdir that follows a kill can
// race it.
func rmdirRetry(dir string) error {
	delay := 10 * time.Millisecond
	var err error
	for i := 0; i < 6; i++ {
		err = rmdir(dir)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY):
			time.Sleep(delay)
			delay *= 2
		case errors.Is(err, unix.EINTR):
		default:
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EROFS)
}
