package main

import (
	"errors"
	"fmt"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/runtime/container"
	"github.com/cubo-dev/cubo/spec"
)

// createFlags are shared by create and run.
type createFlags struct {
	Bundle        string `short:"b" default:"." help:"Path to the root of the bundle directory."`
	ConsoleSocket string `name:"console-socket" help:"Path to an AF_UNIX socket which will receive the pty master."`
	PidfdSocket   string `name:"pidfd-socket" help:"Path to an AF_UNIX socket which will receive the init's pidfd."`
	PidFile       string `name:"pid-file" help:"File to write the init's host pid to."`
	NoPivot       bool   `name:"no-pivot" help:"Do not use pivot_root (for a rootfs on a ramdisk)."`
	NoNewKeyring  bool   `name:"no-new-keyring" help:"Do not create a new session keyring."`
	PreserveFds   int    `name:"preserve-fds" help:"Pass N additional fds (from 3 on) to the container."`

	// specJSON is config.json as read by loadSpec, forwarded unchanged.
	specJSON []byte
}

type createCmd struct {
	createFlags
	ID string `arg:"" name:"container-id" help:"Container ID." optional:""`
}

func (c *createCmd) Run(g *globals) error {
	ct, err := c.create(g, c.ID, nil)
	if err != nil {
		return err
	}
	return c.finish(ct)
}

// create loads the bundle and creates the container. consoleOverride, when
// set, replaces --console-socket (foreground run with a terminal).
func (c *createFlags) create(g *globals, id string, consoleOverride *os.File) (*container.Container, error) {
	if err := container.ValidateID(id); err != nil {
		return nil, err
	}
	s, err := c.loadSpec()
	if err != nil {
		return nil, err
	}
	return c.createFrom(g, id, s, consoleOverride)
}

// loadSpec loads and validates the bundle's config.json.
func (c *createFlags) loadSpec() (*specs.Spec, error) {
	bundle, err := filepath.Abs(c.Bundle)
	if err != nil {
		return nil, fmt.Errorf("resolve bundle: %w", err)
	}
	c.Bundle = bundle
	s, raw, err := spec.LoadRaw(bundle)
	c.specJSON = raw
	return s, err
}

// createFrom creates the container from an already loaded config.
func (c *createFlags) createFrom(g *globals, id string, s *specs.Spec, consoleOverride *os.File) (*container.Container, error) {
	if err := container.ValidateID(id); err != nil {
		return nil, err
	}
	root, err := g.root()
	if err != nil {
		return nil, err
	}
	bundle := c.Bundle
	// Relative paths are the caller's, so resolve them before anything
	// changes directory.
	if c.PidFile != "" {
		if c.PidFile, err = filepath.Abs(c.PidFile); err != nil {
			return nil, err
		}
	}
	if c.PreserveFds < 0 {
		return nil, errors.New("--preserve-fds must not be negative")
	}
	opts := container.CreateOpts{
		Bundle:        bundle,
		Spec:          s,
		NoPivot:       c.NoPivot,
		NoNewKeyring:  c.NoNewKeyring,
		PreserveFds:   c.PreserveFds,
		SystemdCgroup: g.SystemdCgroup,
		Rootless:      g.rootlessMode(),
	}
	terminal := s.Process != nil && s.Process.Terminal
	files, env := listenFds()
	opts.SpecJSON = c.specJSON
	if len(files) > 0 && s.Process != nil {
		opts.ExtraFiles = files
		s.Process.Env = append(s.Process.Env, env...)
		opts.SpecJSON = nil // changed: encode it again
	}
	switch {
	case consoleOverride != nil:
		opts.ConsoleSocket = consoleOverride
	case c.ConsoleSocket != "":
		if !terminal {
			return nil, errors.New("cannot use console socket if runc will not detach or allocate tty")
		}
		f, err := connectConsole(c.ConsoleSocket)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		opts.ConsoleSocket = f
	case terminal:
		return nil, errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	ct, err := container.Create(root, id, opts)
	if err != nil {
		return nil, err
	}
	ct.Warn = func(err error) { g.log.Warn().Msg(err.Error()) }
	return ct, nil
}

// finish writes the pid file (and pidfd) of a created container; on
// failure the container is destroyed so no half-created one remains.
func (c *createFlags) finish(ct *container.Container) error {
	if c.PidfdSocket != "" {
		if err := sendPidfd(c.PidfdSocket, ct.InitPid); err != nil {
			_ = ct.Delete(true)
			return err
		}
	}
	if c.PidFile != "" {
		if err := writePidFile(c.PidFile, ct.InitPid); err != nil {
			_ = ct.Delete(true)
			return err
		}
	}
	if err := ct.Commit(); err != nil {
		_ = ct.Delete(true)
		return err
	}
	return nil
}

// listenFds passes socket-activation fds through when LISTEN_PID is us, as
// runc does; conmon rewrites LISTEN_PID to the runtime's pid.
func listenFds() ([]*os.File, []string) {
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil, nil
	}
	files := make([]*os.File, 0, n)
	for i := 0; i < n; i++ {
		files = append(files, os.NewFile(uintptr(3+i), "listen-fd"))
	}
	return files, []string{"LISTEN_FDS=" + strconv.Itoa(n), "LISTEN_PID=1"}
}

func connectConsole(path string) (*os.File, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to console socket %s: %w", path, err)
	}
	defer conn.Close()
	f, err := conn.(*net.UnixConn).File()
	if err != nil {
		return nil, fmt.Errorf("console socket fd: %w", err)
	}
	return f, nil
}

func sendPidfd(path string, pid int) error {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return fmt.Errorf("connect to pidfd socket %s: %w", path, err)
	}
	defer conn.Close()
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("open pidfd: %w", err)
	}
	defer unix.Close(pfd)
	_, _, err = conn.(*net.UnixConn).WriteMsgUnix([]byte("pidfd"), unix.UnixRights(pfd), nil)
	if err != nil {
		return fmt.Errorf("send pidfd: %w", err)
	}
	return nil
}

// writePidFile writes the pid without a trailing newline (go-runc and
// runtime-tools parse the whole file as an integer), atomically: a temp file
// next to it, then rename.
func writePidFile(path string, pid int) error {
	dir, base := filepath.Split(path)
	tmp := filepath.Join(dir, "."+base)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_SYNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}
