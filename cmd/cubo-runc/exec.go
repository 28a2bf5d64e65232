package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/runtime/container"
	"github.com/cubo-dev/cubo/spec"
)

type execCmd struct {
	Process        string   `short:"p" help:"Path to the process.json (an OCI process object)."`
	Detach         bool     `short:"d" help:"Detach from the container's process."`
	PidFile        string   `name:"pid-file" help:"File to write the process's host pid to."`
	ConsoleSocket  string   `name:"console-socket" help:"Path to an AF_UNIX socket which will receive the pty master."`
	PidfdSocket    string   `name:"pidfd-socket" help:"Path to an AF_UNIX socket which will receive the process's pidfd."`
	PreserveFds    int      `name:"preserve-fds" help:"Pass N additional fds (from 3 on) to the process."`
	Tty            bool     `short:"t" help:"Allocate a pseudo-TTY."`
	Cwd            string   `type:"raw" help:"Current working directory in the container."`
	Env            []string `short:"e" sep:"none" type:"raw" help:"Set environment variables (repeatable)."`
	User           string   `short:"u" help:"UID (format: <uid>[:<gid>])."`
	AdditionalGids []int64  `name:"additional-gids" short:"g" sep:"none" help:"Additional gids (repeatable)."`
	Cap            []string `short:"c" sep:"none" help:"Add a capability to the bounding, effective and permitted sets (repeatable)."`
	NoNewPrivs     bool     `name:"no-new-privs" help:"Set no_new_privs for the process."`
	Apparmor       string   `help:"AppArmor profile for the process."`
	ProcessLabel   string   `name:"process-label" help:"SELinux label for the process."`
	Cgroup         []string `sep:"none" help:"Run in a sub-cgroup of the container ([controller:]path)."`
	IgnorePaused   bool     `name:"ignore-paused" help:"Allow exec in a paused container."`
	ID             string   `arg:"" name:"container-id" optional:""`
	Command        []string `arg:"" optional:"" type:"raw" help:"Command and arguments."`
}

func (c *execCmd) Run(g *globals) error {
	ct, err := load(g, c.ID)
	if err != nil {
		return err
	}
	if c.PidFile != "" {
		if c.PidFile, err = absPath(c.PidFile); err != nil {
			return err
		}
	}
	p, err := c.process(ct)
	if err != nil {
		return err
	}
	if p.Terminal && c.Detach && c.ConsoleSocket == "" {
		return errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if c.ConsoleSocket != "" && !(p.Terminal && c.Detach) {
		return errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	o := container.ExecOpts{Process: p, PreserveFds: c.PreserveFds, IgnorePaused: c.IgnorePaused, SubCgroup: c.Cgroup}
	var ptyRecv *os.File
	if c.ConsoleSocket != "" {
		f, err := connectConsole(c.ConsoleSocket)
		if err != nil {
			return err
		}
		defer f.Close()
		o.ConsoleSocket = f
	} else if p.Terminal {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("create console socketpair: %w", err)
		}
		ptyRecv = os.NewFile(uintptr(fds[0]), "console-recv")
		defer ptyRecv.Close()
		send := os.NewFile(uintptr(fds[1]), "console-send")
		defer send.Close()
		o.ConsoleSocket = send
	}
	var sigs chan os.Signal
	if !c.Detach {
		sigs = make(chan os.Signal, 128)
		signal.Notify(sigs, forwardedSignals...)
	}
	proc, err := ct.Exec(o)
	if err != nil {
		return err
	}
	if c.PidfdSocket != "" {
		if err := sendPidfd(c.PidfdSocket, proc.Pid); err != nil {
			_ = proc.Kill()
			return err
		}
	}
	if c.PidFile != "" {
		if err := writePidFile(c.PidFile, proc.Pid); err != nil {
			_ = proc.Kill()
			return err
		}
	}
	if c.Detach {
		return nil
	}
	var ioDone chan struct{}
	if ptyRecv != nil {
		master, err := recvFd(ptyRecv)
		if err != nil {
			_ = proc.Kill()
			return err
		}
		_, restore, done := attachPty(master)
		ioDone = done
		defer restore()
	}
	ps := forwardUntilExit(proc.Pid, proc.Wait, sigs, nil)
	if ioDone != nil {
		<-ioDone
	}
	return &exitError{code: exitCode(ps)}
}

// process builds the process to run: process.json as is, or the bundle's
// config.json process with the positional args and the flags applied.
func (c *execCmd) process(ct *container.Container) (*specs.Process, error) {
	if c.Process != "" {
		b, err := os.ReadFile(c.Process)
		if err != nil {
			return nil, fmt.Errorf("read process file: %w", err)
		}
		var p specs.Process
		if err := spec.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("parse process file %s: %w", c.Process, err)
		}
		if err := spec.ValidateProcess(&p); err != nil {
			return nil, err
		}
		return &p, nil
	}
	if len(c.Command) == 0 {
		return nil, errors.New("exec args cannot be empty")
	}
	// runc re-reads config.json from the bundle, which must still exist.
	s, err := loadSpecQuiet(ct.Bundle)
	if err != nil {
		return nil, fmt.Errorf("load bundle config: %w", err)
	}
	if s.Process == nil {
		return nil, errors.New("config.json has no process")
	}
	p := *s.Process
	p.Args = c.Command
	p.Terminal = c.Tty
	p.ConsoleSize = nil
	if c.Cwd != "" {
		p.Cwd = c.Cwd
	}
	p.Env = mergeEnv(p.Env, c.Env)
	if c.User != "" {
		uidS, gidS, hasGid := strings.Cut(c.User, ":")
		uid, err := strconv.ParseUint(uidS, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parsing %s as int for uid failed: %w", uidS, err)
		}
		p.User.UID = uint32(uid)
		if hasGid {
			gid, err := strconv.ParseUint(gidS, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parsing %s as int for gid failed: %w", gidS, err)
			}
			p.User.GID = uint32(gid)
		}
	}
	for _, g := range c.AdditionalGids {
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(g))
	}
	if len(c.Cap) > 0 {
		caps := &specs.LinuxCapabilities{}
		if p.Capabilities != nil {
			*caps = *p.Capabilities
		}
		for _, cp := range c.Cap {
			cp = strings.ToUpper(cp)
			if !strings.HasPrefix(cp, "CAP_") {
				cp = "CAP_" + cp
			}
			caps.Bounding = append(caps.Bounding, cp)
			caps.Effective = append(caps.Effective, cp)
			caps.Permitted = append(caps.Permitted, cp)
			if len(caps.Inheritable) > 0 {
				caps.Ambient = append(caps.Ambient, cp)
			}
		}
		p.Capabilities = caps
	}
	if c.NoNewPrivs {
		p.NoNewPrivileges = true
	}
	if c.Apparmor != "" {
		p.ApparmorProfile = c.Apparmor
	}
	if c.ProcessLabel != "" {
		p.SelinuxLabel = c.ProcessLabel
	}
	if err := spec.ValidateProcess(&p); err != nil {
		return nil, err
	}
	return &p, nil
}

// mergeEnv appends extra to base, a later KEY=value replacing an earlier
// one of the same KEY in place, as runc does for exec --env.
func mergeEnv(base, extra []string) []string {
	out := append([]string{}, base...)
	idx := make(map[string]int, len(out))
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		idx[k] = i
	}
	for _, e := range extra {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := idx[k]; ok {
			out[i] = e
			continue
		}
		idx[k] = len(out)
		out = append(out, e)
	}
	return out
}
