package initproc

import (
	"golang.org/x/sys/unix"
)

// The init runs one goroutine on GOMAXPROCS=1 and nothing else needs the
// P while it waits, so its syscalls skip the Go scheduler's syscall
// bookkeeping (RawSyscall): a Syscall that blocks longer than 20µs makes
// the runtime's sysmon hand the P to another thread and wake itself up
// again, which measured at about a hundred context switches per create.

// mount is unix.Mount as a raw syscall.
func mount(source, target, fstype string, flags uintptr, data string) error {
	src, err := unix.BytePtrFromString(source)
	if err != nil {
		return err
	}
	tgt, err := unix.BytePtrFromString(target)
	if err != nil {
		return err
	}
	typ, err := unix.BytePtrFromString(fstype)
	if err != nil {
		return err
	}
	var dat *byte
	if data != "" {
		if dat, err = unix.BytePtrFromString(data); err != nil {
			return err
		}
	}
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_MOUNT, uintptr(ptr(src)), uintptr(ptr(tgt)), uintptr(ptr(typ)), flags, uintptr(ptr(dat)), 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// rawOpenat is unix.Openat as a raw syscall, for the blocking open of the
// exec fifo.
func rawOpenat(dirfd int, path string, flags int, mode uint32) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(ptr(p)), uintptr(flags), uintptr(mode), 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(r), nil
	}
}
