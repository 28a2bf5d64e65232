package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/runtime/cgroups"
	"github.com/cubo-dev/cubo/runtime/internal/hooks"
	"github.com/cubo-dev/cubo/runtime/internal/linux"
	"github.com/cubo-dev/cubo/runtime/internal/proto"
	"github.com/cubo-dev/cubo/runtime/nsenter"
)

// CreateOpts are the inputs of Create beyond the root and the ID.
type CreateOpts struct {
	// Bundle is the absolute bundle directory; Spec was loaded from it.
	Bundle string
	Spec   *specs.Spec
	// SpecJSON is Spec as read from config.json, if Spec was not changed
	// since; it is forwarded to the init and stored as is. Nil: encode Spec.
	SpecJSON []byte
	// ConsoleSocket is a connected AF_UNIX socket to send the pty master
	// to; required iff Spec.Process.Terminal.
	ConsoleSocket *os.File
	NoPivot       bool
	NoNewKeyring  bool
	// PreserveFds passes fds 3..3+N-1 of this process to the container.
	PreserveFds   int
	SystemdCgroup bool
	Rootless      bool
	// Stdin, Stdout and Stderr become the container's stdio; nil means
	// this process's own.
	Stdin, Stdout, Stderr *os.File
	// ExtraEnv is added to the init's (cleared) environment, such as
	// LISTEN_FDS for socket activation.
	ExtraFiles []*os.File
}

// ValidateID applies runc's ID rules plus a length cap: the ID becomes a
// directory name, so it may not exceed NAME_MAX.
func ValidateID(id string) error {
	if id == "" {
		return ErrEmptyID
	}
	if len(id) > 255 || id == "." || id == ".." {
		return ErrInvalidID
	}
	// runc's [\w+\-.]+, checked by hand: a regexp compiled at package init
	// would cost every cubo-runc process, the container init included.
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '+' || c == '-' || c == '.') {
			return ErrInvalidID
		}
	}
	return nil
}

// Create makes the container: it starts the init in new namespaces, puts it
// in its cgroup, lets it build the rootfs, runs the create-time hooks, and
// returns once the init is blocked on the exec fifo and state.json is
// written. On failure nothing is left behind.
func Create(root, id string, o CreateOpts) (_ *Container, retErr error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	s := o.Spec
	if s.Process != nil && s.Process.Terminal && o.ConsoleSocket == nil {
		return nil, errors.New("process.terminal requires a console socket")
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create root %s: %w", root, err)
	}
	dir := filepath.Join(root, id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, ErrExist
		}
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	// From here on, every failure removes the state dir.
	c := &Container{root: root, dir: dir}
	c.ID = id
	c.Bundle = o.Bundle
	c.Config = s
	c.ConfigJSON = o.SpecJSON
	if c.ConfigJSON == nil {
		cj, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("encode config: %w", err)
		}
		c.ConfigJSON = cj
	}
	c.SystemdCgroup = o.SystemdCgroup
	c.Rootless = o.Rootless
	var mgr cgroups.Manager
	defer func() {
		if retErr == nil {
			return
		}
		if c.init != nil {
			_ = c.init.Kill()
			_, _ = c.init.Wait()
		}
		if mgr != nil {
			_ = mgr.Destroy()
		}
		os.RemoveAll(dir)
	}()
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Close()

	c.Rootfs = s.Root.Path
	if !filepath.IsAbs(c.Rootfs) {
		c.Rootfs = filepath.Join(o.Bundle, c.Rootfs)
	}
	if r, err := filepath.EvalSymlinks(c.Rootfs); err == nil {
		c.Rootfs = r
	}

	fifoPath := filepath.Join(dir, fifoName)
	if err := unix.Mkfifo(fifoPath, 0o622); err != nil {
		return nil, fmt.Errorf("create exec fifo: %w", err)
	}
	// The mode above is trimmed by the umask; set it exactly so a
	// non-root container user can open it for writing.
	if err := os.Chmod(fifoPath, 0o622); err != nil {
		return nil, fmt.Errorf("chmod exec fifo: %w", err)
	}
	if uid := rootUID(s); uid != 0 {
		if err := os.Chown(fifoPath, uid, rootGID(s)); err != nil {
			return nil, fmt.Errorf("chown exec fifo: %w", err)
		}
	}
	// The init reaches the fifo through an O_PATH fd of its directory:
	// unlike reopening an fd of the fifo through /proc/self/fd, openat on
	// it works after pivot_root even when the container mounts no /proc.
	fifoDir, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open state dir: %w", err)
	}
	defer fifoDir.Close()

	parentSock, childSock, err := proto.Socketpair()
	if err != nil {
		return nil, err
	}
	defer func() {
		// Kept open on success until Commit: the init waits for it.
		if retErr != nil {
			parentSock.Close()
		}
	}()
	defer childSock.Close()

	exe, err := initExecutable()
	if err != nil {
		return nil, err
	}
	defer exe.Close()

	// fds of the init: 0-2 stdio, then the preserved fds (so they keep
	// their numbers in the container), then ours.
	files, err := preservedFiles(o.PreserveFds, len(o.ExtraFiles)+4)
	if err != nil {
		return nil, err
	}
	files = append(files, o.ExtraFiles...)
	// The init is short-lived and allocates little: no garbage collector,
	// and one P (see initproc's raw_linux.go). Its runtime's threads get a
	// coarse timer slack as ours do (see nsenter.c).
	env := []string{"GOMAXPROCS=1", "GOGC=off"}
	addFile := func(name string, f *os.File) int {
		files = append(files, f)
		n := 2 + len(files)
		if name != "" {
			env = append(env, name+"="+strconv.Itoa(n))
		}
		return n
	}
	idmapped, err := idmappedMounts(s, o.Bundle)
	if err != nil {
		return nil, err
	}
	var mountFds map[int]int
	for i, f := range idmapped {
		defer f.Close()
		if mountFds == nil {
			mountFds = map[int]int{}
		}
		mountFds[i] = addFile("", f)
	}
	addFile(proto.EnvInitPipe, childSock)
	addFile(proto.EnvFifoFd, fifoDir)
	if o.ConsoleSocket != nil {
		addFile(proto.EnvConsoleFd, o.ConsoleSocket)
	}
	exeFd := addFile("", exe)

	cloneFlags, pidnsPath, nsEnv, err := cloneFlags(s)
	if err != nil {
		return nil, err
	}
	env = append(env, nsEnv...)
	c.OwnPidNS = cloneFlags&unix.CLONE_NEWPID != 0 || (pidnsPath == "" && hasNewNS(s, specs.PIDNamespace))
	cmd := &exec.Cmd{
		Path:       "/proc/self/fd/" + strconv.Itoa(exeFd),
		Args:       []string{"cubo-runc", "init"},
		Env:        env,
		Dir:        o.Bundle,
		Stdin:      orStd(o.Stdin, os.Stdin),
		Stdout:     orStd(o.Stdout, os.Stdout),
		Stderr:     orStd(o.Stderr, os.Stderr),
		ExtraFiles: files,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: uintptr(cloneFlags),
			Setsid:     true,
		},
	}
	if cloneFlags&unix.CLONE_NEWUSER != 0 {
		cmd.SysProcAttr.UidMappings = idMaps(s.Linux.UIDMappings)
		cmd.SysProcAttr.GidMappings = idMaps(s.Linux.GIDMappings)
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
		// Become the namespace's root before exec: our host uid is usually
		// unmapped inside, and an unmapped process loses every capability
		// at execve.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	if err := startInPidNS(cmd, pidnsPath); err != nil {
		return nil, fmt.Errorf("start container init: %w", err)
	}
	c.init = cmd.Process
	c.InitPid = cmd.Process.Pid
	childSock.Close()
	st, err := linux.Stat(c.InitPid)
	if err != nil {
		return nil, fmt.Errorf("read init start time: %w", err)
	}
	c.InitStartTime = st.StartTime

	var res *specs.LinuxResources
	cgPath := ""
	if s.Linux != nil {
		res = effectiveResources(s)
		cgPath = s.Linux.CgroupsPath
	}
	mgr, err = cgroups.New(cgroups.Config{Path: cgPath, Name: id, Resources: res, Rootless: o.Rootless})
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	if err := mgr.Apply(c.InitPid); err != nil {
		return nil, fmt.Errorf("apply cgroups: %w", err)
	}
	if res != nil {
		if err := mgr.Set(res); err != nil {
			return nil, fmt.Errorf("set cgroup resources: %w", err)
		}
	}
	c.CgroupPaths = mgr.Paths()

	cfg := &proto.InitConfig{
		ID:           id,
		SpecJSON:     c.ConfigJSON,
		Rootfs:       c.Rootfs,
		Bundle:       o.Bundle,
		NoPivot:      o.NoPivot,
		NoNewKeyring: o.NoNewKeyring,
		PreserveFds:  o.PreserveFds + len(o.ExtraFiles),
		//lint:ignore SA1019 Docker still sends prestart hooks
		HookSync: s.Hooks != nil && (len(s.Hooks.Prestart) > 0 || len(s.Hooks.CreateRuntime) > 0),
		CgroupNS: hasNewNS(s, specs.CgroupNamespace),
		MountFds: mountFds,
	}
	if err := proto.Send(parentSock, proto.Message{Type: proto.MsgConfig, Config: cfg}); err != nil {
		return nil, err
	}
	for done := false; !done; {
		m, err := proto.Recv(parentSock)
		if err == io.EOF {
			return nil, c.initDied()
		}
		if err != nil {
			return nil, err
		}
		switch m.Type {
		case proto.MsgHooks:
			// The legacy prestart hooks see "created", which
			// runtime-tools checks; createRuntime is specified to run
			// while the container is still "creating".
			st := c.OCIState(Created)
			//lint:ignore SA1019 Docker still sends prestart hooks
			if err := hooks.Run(s.Hooks.Prestart, st, "prestart"); err != nil {
				return nil, err
			}
			st.Status = specs.StateCreating
			if err := hooks.Run(s.Hooks.CreateRuntime, st, "createRuntime"); err != nil {
				return nil, err
			}
			if err := proto.Send(parentSock, proto.Message{Type: proto.MsgHooksDone}); err != nil {
				return nil, err
			}
		case proto.MsgSeccomp:
			err := sendSeccompListener(s, m.Fd, c.OCIState(Created))
			unix.Close(m.Fd)
			if err != nil {
				return nil, err
			}
		case proto.MsgReady:
			done = true
		case proto.MsgError:
			return nil, fmt.Errorf("unable to start container process: %s", m.Error)
		default:
			return nil, fmt.Errorf("unexpected %s message from init", m.Type)
		}
	}
	c.Created = time.Now().UTC()
	if err := c.save(); err != nil {
		return nil, err
	}
	c.sock = parentSock
	return c, nil
}

// Commit tells the init that the container is recorded (state.json by
// Create, the pid file by the caller), after which it waits for start. A
// caller that dies before Commit takes the init with it.
func (c *Container) Commit() error {
	if c.sock == nil {
		return nil
	}
	defer func() {
		c.sock.Close()
		c.sock = nil
	}()
	if err := proto.Send(c.sock, proto.Message{Type: proto.MsgCommitted}); err != nil {
		return fmt.Errorf("commit container: %w", err)
	}
	return nil
}

// initDied turns an unexpected EOF from the init into an error with its
// exit status.
func (c *Container) initDied() error {
	ps, err := c.init.Wait()
	c.init = nil
	if err != nil {
		return fmt.Errorf("container init exited unexpectedly: %w", err)
	}
	return fmt.Errorf("container init exited unexpectedly: %s", ps)
}

// Wait waits for the init of a container created by this process.
func (c *Container) Wait() (*os.ProcessState, error) {
	if c.init == nil {
		return nil, errors.New("container init is not a child of this process")
	}
	return c.init.Wait()
}

func orStd(f, std *os.File) *os.File {
	if f != nil {
		return f
	}
	return std
}

var nsCloneFlags = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// cloneFlags returns the namespaces to create at clone time, a pid
// namespace to enter (for startInPidNS), and the environment for the nsenter
// constructor.
//
// The cgroup namespace is left to the init (it must be created after
// joining the cgroup). When any namespace is joined by path (user and mount
// ones can only be joined by the constructor, before Go starts threads),
// every namespace except pid is handled there: joined ones first (user
// first), then the new ones unshared, so the new ones are owned by a joined
// user namespace, as with runc.
func cloneFlags(s *specs.Spec) (flags int, pidnsPath string, env []string, err error) {
	if s.Linux == nil {
		return 0, "", nil, nil
	}
	viaC := false
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" && ns.Type != specs.PIDNamespace {
			viaC = true
		}
	}
	var joins []string
	unshare := 0
	for _, ns := range s.Linux.Namespaces {
		f, ok := nsCloneFlags[ns.Type]
		if !ok {
			return 0, "", nil, fmt.Errorf("unknown namespace type %q", ns.Type)
		}
		if ns.Path != "" {
			switch {
			case ns.Type == specs.PIDNamespace:
				pidnsPath = ns.Path
			default:
				joins = append(joins, nsProcNames[ns.Type]+"="+ns.Path)
			}
			continue
		}
		switch {
		case ns.Type == specs.CgroupNamespace:
			continue
		case ns.Type == specs.TimeNamespace:
			// clone(2) cannot take CLONE_NEWTIME (it overlaps CSIGNAL).
			unshare |= f
			continue
		case viaC && ns.Type == specs.UserNamespace:
			return 0, "", nil, errors.New("creating a user namespace while joining a mount namespace by path is not supported")
		case viaC && ns.Type != specs.PIDNamespace:
			unshare |= f
			continue
		}
		flags |= f
	}
	if len(joins) > 0 {
		env = append(env, nsenter.EnvNSEnter+"="+strings.Join(joins, ";"))
	}
	if unshare != 0 {
		env = append(env, nsenter.EnvUnshare+"="+strconv.Itoa(unshare))
	}
	return flags, pidnsPath, env, nil
}

func hasNewNS(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t && ns.Path == "" {
			return true
		}
	}
	return false
}

// startInPidNS starts cmd, inside the pid namespace at path if one is given.
// setns(CLONE_NEWPID) only changes the namespace of future children, so the
// clone in cmd.Start lands there.
//
// Preconditions: none; the OS thread is locked here and, if restoring the
// original namespace fails, never unlocked so the Go runtime discards it.
func startInPidNS(cmd *exec.Cmd, path string) error {
	goruntime.LockOSThread()
	// The init's main thread (and so the container process) must start
	// with the caller's timer slack, not the runtime threads' (nsenter.c).
	nsenter.RestoreTimerSlack()
	if path == "" {
		defer goruntime.UnlockOSThread()
		return cmd.Start()
	}
	orig, err := unix.Open("/proc/thread-self/ns/pid_for_children", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		goruntime.UnlockOSThread()
		return fmt.Errorf("open own pid namespace: %w", err)
	}
	defer unix.Close(orig)
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		goruntime.UnlockOSThread()
		return fmt.Errorf("open pid namespace %s: %w", path, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWPID); err != nil {
		goruntime.UnlockOSThread()
		return fmt.Errorf("join pid namespace %s: %w", path, err)
	}
	startErr := cmd.Start()
	if err := unix.Setns(orig, unix.CLONE_NEWPID); err != nil {
		// Leave the thread locked: it is in the wrong namespace, and a
		// goroutine exiting while locked makes the runtime drop it.
		return fmt.Errorf("restore pid namespace: %w", err)
	}
	goruntime.UnlockOSThread()
	return startErr
}

func idMaps(m []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, 0, len(m))
	for _, e := range m {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(e.ContainerID), HostID: int(e.HostID), Size: int(e.Size)})
	}
	return out
}

// rootUID is the host uid that container root maps to.
func rootUID(s *specs.Spec) int {
	if s.Linux != nil {
		for _, m := range s.Linux.UIDMappings {
			if m.ContainerID == 0 {
				return int(m.HostID)
			}
		}
	}
	return 0
}

func rootGID(s *specs.Spec) int {
	if s.Linux != nil {
		for _, m := range s.Linux.GIDMappings {
			if m.ContainerID == 0 {
				return int(m.HostID)
			}
		}
	}
	return 0
}

// sendSeccompListener hands the seccomp notify fd to the agent listening
// on linux.seccomp.listenerPath, with the container state, as the runtime
// spec describes (one message, SCM_RIGHTS).
func sendSeccompListener(s *specs.Spec, fd int, st *specs.State) error {
	sc := s.Linux.Seccomp
	if sc.ListenerPath == "" {
		return errors.New("seccomp notify rules need linux.seccomp.listenerPath")
	}
	msg, err := json.Marshal(specs.ContainerProcessState{
		Version:  specs.Version,
		Fds:      []string{specs.SeccompFdName},
		Pid:      st.Pid,
		Metadata: sc.ListenerMetadata,
		State:    *st,
	})
	if err != nil {
		return err
	}
	conn, err := net.Dial("unix", sc.ListenerPath)
	if err != nil {
		return fmt.Errorf("connect to seccomp agent %s: %w", sc.ListenerPath, err)
	}
	defer conn.Close()
	if _, _, err := conn.(*net.UnixConn).WriteMsgUnix(msg, unix.UnixRights(fd), nil); err != nil {
		return fmt.Errorf("send seccomp fd to %s: %w", sc.ListenerPath, err)
	}
	return nil
}

// preservedFiles returns this process's fds 3..3+n-1 (--preserve-fds), in
// order, so that they keep their numbers in the container; spare is extra
// capacity for the caller's own files.
func preservedFiles(n, spare int) ([]*os.File, error) {
	files := make([]*os.File, 0, n+spare)
	for i := 0; i < n; i++ {
		fd := 3 + i
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, fmt.Errorf("unable to stat preserved-fd %d (of %d): %w", i, n, err)
		}
		files = append(files, os.NewFile(uintptr(fd), "preserved-"+strconv.Itoa(fd)))
	}
	return files, nil
}
