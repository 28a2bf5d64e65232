package manager

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/manager/ociruntime"
)

// monitorMsg is what the monitor reports to `cubo run` over the sync pipe, one JSON
// object per line:
//
//	monitor                         cubo run
//	{"started":true,"pid":N}  -->   detached: print the ID and exit
//	{"error":"..."}           -->   the container failed to start (it is recorded stopped)
//	{"exit":N}                -->   attached: the process exited with N; cubo exits with it
type monitorMsg struct {
	Started bool   `json:"started,omitempty"`
	Pid     int    `json:"pid,omitempty"`
	Error   string `json:"error,omitempty"`
	Exit    *int   `json:"exit,omitempty"`
}

// Fds the monitor inherits.
const (
	monitorLockFd = 3
	monitorSyncFd = 4
)

// Attach is the caller's stdio for an interactive container.
type Attach struct {
	Stdin, Stdout, Stderr *os.File
	// Resize, when set, receives a function to call on SIGWINCH: it makes the monitor
	// copy the terminal's size to the container's pty.
	Resize func(func())
}

// Start starts the monitor, which runs the container. Detached (attach nil), it returns
// once the container's process runs, and the monitor keeps the container going after
// the caller exits. Attached, it returns when the container exits, with the process's
// exit status as *ociruntime.ExitError when non-zero. Either way the caller's lock on
// the container passes to the monitor.
func (c *Created) Start(ctx context.Context, attach *Attach) error {
	defer c.lock.release()
	self := c.m.self
	if self == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find monitor binary: %w", err)
		}
		self = exe
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start monitor: %w", err)
	}
	defer rd.Close()
	cmd := exec.Command(self, MonitorArg, c.dir)
	cmd.Env = append(os.Environ(), "_CUBO_MONITOR_LOG="+c.m.log.GetLevel().String())
	// The monitor leads its own session, so closing the user's terminal (SIGHUP to the
	// foreground session) never reaches it or the container.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// A long-lived monitor must not pin the caller's working directory (and its mount).
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{c.lock.f, wr}
	if attach != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = attach.Stdin, attach.Stdout, attach.Stderr
	}
	if err := cmd.Start(); err != nil {
		wr.Close()
		return fmt.Errorf("start monitor: %w", err)
	}
	wr.Close()
	c.m.log.Debug().Str("id", c.ID).Int("monitor", cmd.Process.Pid).Msg("monitor started")
	if attach == nil {
		// The monitor outlives us; nobody here will wait for it.
		defer func() { _ = cmd.Process.Release() }()
	} else {
		defer func() { _ = cmd.Wait() }()
	}

	msgs := make(chan monitorMsg)
	go func() {
		defer close(msgs)
		sc := bufio.NewScanner(rd)
		for sc.Scan() {
			var mm monitorMsg
			if json.Unmarshal(sc.Bytes(), &mm) == nil {
				msgs <- mm
			}
		}
	}()
	var sigs chan os.Signal
	if attach != nil {
		sigs = make(chan os.Signal, 8)
		// With a terminal in raw mode ^C is a byte for the container's own line
		// discipline, so only signals sent to cubo itself are forwarded.
		signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
		defer signal.Stop(sigs)
		if attach.Resize != nil {
			attach.Resize(func() { _ = cmd.Process.Signal(unix.SIGWINCH) })
		}
	}
	rt := c.runtime()
	for {
		select {
		case mm, ok := <-msgs:
			if !ok {
				return fmt.Errorf("monitor of %s exited unexpectedly%.0w", c.ID, errdefs.ErrUnknown)
			}
			switch {
			case mm.Error != "":
				return errors.New(mm.Error)
			case mm.Exit != nil:
				if *mm.Exit != 0 {
					return &ociruntime.ExitError{Status: *mm.Exit}
				}
				return nil
			case mm.Started && attach == nil:
				return nil
			}
		case s := <-sigs:
			if sig, ok := s.(syscall.Signal); ok {
				_ = rt.Kill(context.WithoutCancel(ctx), c.ID, sig, false)
			}
		}
	}
}
