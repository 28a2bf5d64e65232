package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"
)

type runCmd struct {
	createFlags
	Detach      bool   `short:"d" help:"Detach from the container's process."`
	Keep        bool   `help:"Do not delete the container after it exits."`
	NoSubreaper bool   `name:"no-subreaper" help:"Disable the use of the subreaper used to reap reparented processes."`
	ID          string `arg:"" name:"container-id" optional:""`
}

func (c *runCmd) Run(g *globals) error {
	if c.Detach {
		ct, err := c.create(g, c.ID, nil)
		if err != nil {
			return err
		}
		if err := c.finish(ct); err != nil {
			return err
		}
		if err := ct.Start(); err != nil {
			_ = ct.Delete(true)
			return err
		}
		return nil
	}
	if c.ConsoleSocket != "" {
		return errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	if !c.NoSubreaper {
		// Processes the container leaves behind (shared pid namespace)
		// are reparented to us, not to the host's init.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("become subreaper: %w", err)
		}
	}
	// Catch signals before the container exists, so none is lost between
	// its creation and the forwarding loop.
	sigs := make(chan os.Signal, 128)
	signal.Notify(sigs, forwardedSignals...)

	var ptyRecv *os.File
	var consoleEnd *os.File
	s, err := c.loadSpec()
	if err != nil {
		return err
	}
	if s.Process != nil && s.Process.Terminal {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("create console socketpair: %w", err)
		}
		ptyRecv = os.NewFile(uintptr(fds[0]), "console-recv")
		consoleEnd = os.NewFile(uintptr(fds[1]), "console-send")
		defer ptyRecv.Close()
	}
	ct, err := c.createFrom(g, c.ID, s, consoleEnd)
	if consoleEnd != nil {
		consoleEnd.Close()
	}
	if err != nil {
		return err
	}
	destroy := func() {
		if !c.Keep {
			_ = ct.Destroy()
		}
	}
	if err := c.finish(ct); err != nil {
		return err
	}
	var ioDone chan struct{}
	var restore func()
	var term console.Console
	if ptyRecv != nil {
		master, err := recvFd(ptyRecv)
		if err != nil {
			_ = ct.Delete(true)
			return err
		}
		term, restore, ioDone = attachPty(master)
		defer restore()
	}
	if err := ct.Start(); err != nil {
		_ = ct.Delete(true)
		return err
	}
	ps := forwardUntilExit(ct.InitPid, ct.Wait, sigs, term)
	if ioDone != nil {
		<-ioDone
	}
	if restore != nil {
		restore()
	}
	destroy()
	return &exitError{code: exitCode(ps)}
}

func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return 255
	}
	ws := ps.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func recvFd(sock *os.File) (*os.File, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, 0)
	if err != nil {
		return nil, fmt.Errorf("receive pty master: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive pty master: bad control message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("receive pty master: bad fd list")
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

// attachPty copies between our stdio and the container's pty, with our
// terminal (if any) in raw mode. ioDone closes when the container side of
// the pty is gone and all its output has been copied.
func attachPty(master *os.File) (console.Console, func(), chan struct{}) {
	term, err := console.ConsoleFromFile(master)
	if err != nil {
		term = nil
	}
	restore := func() {}
	if cur, err := console.ConsoleFromFile(os.Stdin); err == nil {
		if size, err := cur.Size(); err == nil && term != nil {
			_ = term.Resize(size)
		}
		if err := cur.SetRaw(); err == nil {
			restore = func() { _ = cur.Reset() }
		}
	}
	go func() { _, _ = io.Copy(master, os.Stdin) }()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(os.Stdout, master)
		close(done)
	}()
	return term, restore, done
}
