package initproc

import (
	"errors"
	"fmt"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// setupConsole allocates a pty from the container's own devpts (so the
// slave is visible inside), makes its slave the process's stdio and
// controlling terminal, and hands the master to the caller over the console
// socket in one sendmsg, as runc-cli.md §3.1 requires.
func (in *initState) setupConsole(ps *specs.Process) error {
	if in.consoleFd < 0 {
		return errors.New("process.terminal is set but no console socket was given")
	}
	defer unix.Close(in.consoleFd)
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("get pty number: %w", err)
	}
	slavePath := "/dev/pts/" + strconv.Itoa(int(n))
	if cs := ps.ConsoleSize; cs != nil {
		ws := &unix.Winsize{Row: uint16(cs.Height), Col: uint16(cs.Width)}
		if err := unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, ws); err != nil {
			return fmt.Errorf("set console size: %w", err)
		}
	}
	slave, err := unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", slavePath, err)
	}
	defer unix.Close(slave)
	u := ps.User
	if err := unix.Fchown(slave, int(u.UID), -1); err != nil {
		return fmt.Errorf("chown %s: %w", slavePath, err)
	}
	// /dev/console is what programs like getty and systemd open; an exec'd
	// process must not take it over from the container's own.
	if in.cfg.Exec {
	} else if fd, err := unix.Open("/dev/console", unix.O_CREAT|unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600); err == nil {
		unix.Close(fd)
		if err := mount(slavePath, "/dev/console", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount %s on /dev/console: %w", slavePath, err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := unix.Dup3(slave, i, 0); err != nil {
			return fmt.Errorf("dup pty slave to %d: %w", i, err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	oob := unix.UnixRights(master)
	if err := unix.Sendmsg(in.consoleFd, []byte(slavePath), oob, nil, 0); err != nil {
		return fmt.Errorf("send pty master over console socket: %w", err)
	}
	return nil
}
