// Package initproc is the container side of cubo-runc: the code that runs in
// the re-executed "cubo-runc init" process, already inside the new
// namespaces, and ends by executing the user's program. Init never returns.
//
// Everything here runs on one locked OS thread: setns, unshare(CLONE_NEWCGROUP),
// capabilities and seccomp are per-thread, and the execve at the end must
// happen on the thread that carries them.
package initproc

import (
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/runtime/internal/proto"
	"github.com/cubo-dev/cubo/runtime/nsenter"
)

// Init is called from the cubo-runc binary's package init when argv[1] is
// "init". It reads its fds from _CUBO_* variables, clears the environment so
// nothing of the runtime leaks into the container, builds the container and
// execs the user process. On failure it reports to the parent and exits 1.
func Init() {
	goruntime.GOMAXPROCS(1)
	// Package init runs on the main thread, and everything the init forks or
	// execs (hooks, the container process) starts from it: it has the
	// caller's timer slack back (runtime/nsenter's init), the runtime's other
	// threads keep the coarse one.
	goruntime.LockOSThread()

	sockFd, err := envFd(proto.EnvInitPipe)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cubo-runc init:", err)
		os.Exit(1)
	}
	sock := os.NewFile(uintptr(sockFd), "init-sock")
	fifoFd, _ := envFd(proto.EnvFifoFd)
	consoleFd, _ := envFd(proto.EnvConsoleFd)
	os.Clearenv()

	msg, err := proto.RecvRaw(sock)
	if err != nil || msg.Type != proto.MsgConfig || msg.Config == nil {
		// The parent died or sent garbage: nobody is listening, just go.
		os.Exit(1)
	}
	in := &initState{cfg: msg.Config, sock: sock, fifoFd: fifoFd, consoleFd: consoleFd}
	decodeErr := in.cfg.Decode()
	run := in.run
	if in.cfg.Exec {
		run = in.runExec
	}
	if err := nsenter.Err(); err != nil {
		run = func() error { return err }
	}
	if decodeErr != nil {
		run = func() error { return decodeErr }
	}
	if err := run(); err != nil {
		if in.sock != nil {
			_ = proto.Send(in.sock, proto.Message{Type: proto.MsgError, Error: err.Error()})
		} else {
			// After MsgReady the parent is gone; the container's stderr is
			// the only channel left, as with runc.
			fmt.Fprintln(os.Stderr, "cubo-runc init:", err)
		}
		os.Exit(1)
	}
	panic("unreachable: exec returned without error")
}

func envFd(name string) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return -1, fmt.Errorf("%s is not set; this mode is internal to cubo-runc", name)
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return -1, fmt.Errorf("bad %s=%q", name, v)
	}
	return fd, nil
}

// initState carries what the steps of run share.
type initState struct {
	cfg *proto.InitConfig
	// hostMounts is the mount table as setupRootfs found it.
	hostMounts []mountEntry
	sock       *os.File
	fifoFd     int
	consoleFd  int
}

func (in *initState) run() error {
	c := in.cfg
	s := c.Spec
	noProcess := s.Process == nil
	if noProcess {
		// Create without a process: build the container, then wait until
		// start (which refuses) or delete kills us.
		s.Process = &specs.Process{Cwd: "/"}
	}
	if c.CgroupNS {
		// The parent has put us in the container's cgroup by now, so the
		// new namespace is rooted there.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("unshare cgroup namespace: %w", err)
		}
	}
	if s.Linux != nil {
		if s.Linux.IntelRdt != nil {
			return errors.New("intelRdt is not supported")
		}
		if err := writeTimeOffsets(s.Linux.TimeOffsets); err != nil {
			return err
		}
		if err := setPersonality(s.Linux.Personality); err != nil {
			return err
		}
	}
	if err := processExtras(s.Process); err != nil {
		return err
	}
	if !c.NoNewKeyring {
		if err := joinSessionKeyring(c.ID); err != nil {
			return err
		}
	}
	if s.Process.OOMScoreAdj != nil {
		// Before pivot_root: /proc here is still the host's, which is
		// always mounted; the container may not mount /proc at all.
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*s.Process.OOMScoreAdj)), 0); err != nil {
			return fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	// Without a mount namespace the container shares the host's mounts
	// (runtime-tools' linux_ns_itype). runc then still mounts config.json's
	// mounts, into the host's tree; we only chroot into the rootfs and
	// mount nothing, so the host's mount table is never changed.
	ownMounts := hasNS(s, specs.MountNamespace)
	if ownMounts {
		if err := in.setupRootfs(); err != nil {
			return err
		}
	} else if err := chrootOnly(c.Rootfs); err != nil {
		return err
	}
	if s.Process.Terminal {
		if err := in.setupConsole(s.Process); err != nil {
			return err
		}
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", s.Hostname, err)
		}
	}
	if s.Domainname != "" {
		if err := unix.Setdomainname([]byte(s.Domainname)); err != nil {
			return fmt.Errorf("set domainname %q: %w", s.Domainname, err)
		}
	}
	if s.Linux != nil {
		if err := writeSysctls(s.Linux.Sysctl); err != nil {
			return err
		}
	}
	// Read-only and masked paths come after sysctls, which write /proc/sys.
	if ownMounts {
		if err := finalizeRootfs(s); err != nil {
			return err
		}
	}
	if noProcess {
		if err := in.ready(); err != nil {
			return err
		}
		_ = in.waitStart()
		os.Exit(1)
	}
	if err := setRlimits(s.Process.Rlimits); err != nil {
		return err
	}
	p, err := newProcess(s.Process)
	if err != nil {
		return err
	}
	// See CVE-2024-21626: no fd of the runtime may reach the container.
	// Everything past stdio and the preserved fds is marked close-on-exec
	// (our own sync socket and fifo fd included; they work until execve).
	if err := unix.CloseRange(uint(3+c.PreserveFds), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("mark fds close-on-exec: %w", err)
	}
	if err := precheckCwd(s.Process.Cwd); err != nil {
		return err
	}
	if s.Linux != nil && s.Linux.Seccomp != nil && earlySeccomp(s.Linux.Seccomp, s.Process) {
		// Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which
		// the container user usually lacks: load it before dropping it,
		// as runc does. The profile must then allow the few syscalls the
		// rest of the init makes (Docker's and podman's do).
		if err := setNNP(s.Process); err != nil {
			return err
		}
		if err := loadSeccomp(s.Linux.Seccomp, in.sock); err != nil {
			return err
		}
	}
	if err := p.finalize(); err != nil {
		return err
	}
	// Resolve args[0] now so a missing executable fails create, as callers
	// (Docker, podman) map this wording to exit 127.
	if err := p.lookPath(); err != nil {
		return err
	}
	if err := in.ready(); err != nil {
		return err
	}

	if err := in.waitStart(); err != nil {
		return err
	}
	if s.Hooks != nil && len(s.Hooks.StartContainer) > 0 {
		st := p.hookState(c, os.Getpid())
		if err := runHooks(s.Hooks.StartContainer, st, "startContainer"); err != nil {
			return err
		}
	}
	return p.exec(s)
}

// ready tells the parent the container is built and waits for it to commit
// the container (state.json and the pid file written). A parent killed
// before that leaves no state through which anyone could start or delete
// this init, so it must not block on the fifo for ever: the socket's EOF
// ends it instead.
func (in *initState) ready() error {
	if err := proto.Send(in.sock, proto.Message{Type: proto.MsgReady}); err != nil {
		return err
	}
	m, err := proto.RecvRaw(in.sock)
	if err != nil || m.Type != proto.MsgCommitted {
		// Nobody will hear about an error now; just go.
		os.Exit(1)
	}
	in.sock.Close()
	in.sock = nil
	return nil
}

// waitStart blocks until `cubo-runc start` opens the exec fifo for reading.
// The fifo stays open, close-on-exec, until the user process is executed (or
// the init dies): `start` reads it to EOF, so that it returns, and runs the
// poststart hooks, only after the startContainer hooks and the execve, as
// runc's start does.
func (in *initState) waitStart() error {
	// fifoFd is an O_PATH fd of the state dir, opened on the host side:
	// the fifo's path is not reachable after pivot_root.
	fd, err := rawOpenat(in.fifoFd, "exec.fifo", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open exec fifo: %w", err)
	}
	if _, err := unix.Write(fd, []byte{0}); err != nil {
		return fmt.Errorf("write exec fifo: %w", err)
	}
	unix.Close(in.fifoFd)
	return nil
}

// runExec prepares a process joining a running container. The namespaces
// were joined before Go started (nsenter, and the parent for the pid
// namespace) and the parent put us in the container's cgroup; what is left
// is the per-process setup, the same as for the container's first process.
func (in *initState) runExec() error {
	c := in.cfg
	s := c.Spec
	ps := c.Process
	if ps == nil {
		return errors.New("exec: no process")
	}
	// The process runs in the container's root: setns into its mount
	// namespace moved our root and cwd there.
	if ps.Terminal {
		if err := in.setupConsole(ps); err != nil {
			return err
		}
	}
	if ps.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*ps.OOMScoreAdj)), 0); err != nil {
			return fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	if err := setRlimits(ps.Rlimits); err != nil {
		return err
	}
	if err := processExtras(ps); err != nil {
		return err
	}
	if s.Linux != nil {
		if err := setPersonality(s.Linux.Personality); err != nil {
			return err
		}
	}
	p, err := newProcess(ps)
	if err != nil {
		return err
	}
	if err := unix.CloseRange(uint(3+c.PreserveFds), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("mark fds close-on-exec: %w", err)
	}
	if err := precheckCwd(ps.Cwd); err != nil {
		return err
	}
	if s.Linux != nil && s.Linux.Seccomp != nil && earlySeccomp(s.Linux.Seccomp, ps) {
		if err := setNNP(ps); err != nil {
			return err
		}
		if err := loadSeccomp(s.Linux.Seccomp, in.sock); err != nil {
			return err
		}
	}
	if err := p.finalize(); err != nil {
		return err
	}
	if err := p.lookPath(); err != nil {
		return err
	}
	if err := proto.Send(in.sock, proto.Message{Type: proto.MsgReady}); err != nil {
		return err
	}
	in.sock.Close()
	in.sock = nil
	return p.exec(s)
}

func setNNP(p *specs.Process) error {
	if !p.NoNewPrivileges {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}
