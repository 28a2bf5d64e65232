package initproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/runtime/internal/hooks"
	"github.com/cubo-dev/cubo/runtime/internal/proto"
	"github.com/cubo-dev/cubo/runtime/seccomp"
)

// process is the user program being prepared: its resolved path and the
// final environment.
type process struct {
	spec    *specs.Process
	path    string
	env     []string
	ambient []capability.Cap
}

func newProcess(p *specs.Process) (*process, error) {
	if len(p.Args) == 0 {
		return nil, errors.New("args must not be empty")
	}
	return &process{spec: p, env: p.Env}, nil
}

var rlimitTypes = map[string]int{
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
}

func setRlimits(rl []specs.POSIXRlimit) error {
	for _, r := range rl {
		res, ok := rlimitTypes[r.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit type %q", r.Type)
		}
		lim := &unix.Rlimit{Cur: r.Soft, Max: r.Hard}
		if err := unix.Prlimit(0, res, lim, nil); err != nil {
			return fmt.Errorf("set rlimit %s to %d/%d: %w", r.Type, r.Soft, r.Hard, err)
		}
	}
	return nil
}

// finalize switches to the container user and capabilities. After it the
// init can no longer mount or change namespaces.
func (p *process) finalize() error {
	u := p.spec.User
	execUser, err := lookupUser(u)
	if err != nil {
		return err
	}
	if !hasEnv(p.env, "HOME") && execUser.Home != "" {
		p.env = append(p.env, "HOME="+execUser.Home)
	}
	caps, err := newCaps(p.spec.Capabilities)
	if err != nil {
		return err
	}
	if c := p.spec.Capabilities; c != nil {
		for _, n := range c.Ambient {
			if cp, ok := capByName(n); ok {
				p.ambient = append(p.ambient, cp)
			}
		}
	}
	// The bounding set must shrink while we still hold CAP_SETPCAP.
	if err := caps.Apply(capability.BOUNDS); err != nil {
		return fmt.Errorf("apply bounding capabilities: %w", err)
	}
	// Keep permitted capabilities across the uid change; they are set
	// exactly right below.
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set keepcaps: %w", err)
	}
	groups := make([]int, 0, len(execUser.Sgids)+len(u.AdditionalGids))
	groups = append(groups, execUser.Sgids...)
	for _, g := range u.AdditionalGids {
		groups = append(groups, int(g))
	}
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", groups, err)
	}
	if err := unix.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", u.GID, err)
	}
	if err := unix.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", u.UID, err)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear keepcaps: %w", err)
	}
	if u.Umask != nil {
		unix.Umask(int(*u.Umask))
	} else {
		unix.Umask(0o022)
	}
	cwd := p.spec.Cwd
	if cwd == "" {
		cwd = "/"
	}
	// As the container user, so its permissions apply.
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("chdir to cwd (%q) set in config.json failed: %w", cwd, err)
	}
	if err := verifyCwd(); err != nil {
		return err
	}
	if err := caps.Apply(capability.CAPS); err != nil {
		return fmt.Errorf("apply capabilities: %w", err)
	}
	// The kernel refuses an ambient capability that is not both permitted
	// and inheritable; runc only warns about that, and configs rely on it.
	_ = capability.ResetAmbient()
	for _, cp := range p.ambient {
		_ = capability.SetAmbient(true, cp)
	}
	return nil
}

// lookupUser resolves the numeric user against the container's /etc/passwd
// and /etc/group for HOME and supplementary groups, as runc and Docker do.
func lookupUser(u specs.User) (*user.ExecUser, error) {
	def := &user.ExecUser{Uid: int(u.UID), Gid: int(u.GID), Home: "/"}
	spec := fmt.Sprintf("%d:%d", u.UID, u.GID)
	eu, err := user.GetExecUserPath(spec, def, "/etc/passwd", "/etc/group")
	if err != nil {
		// A rootfs without passwd/group files is normal (a static binary).
		return def, nil
	}
	return eu, nil
}

func newCaps(c *specs.LinuxCapabilities) (capability.Capabilities, error) {
	caps, err := capability.NewPid2(0)
	if err != nil {
		return nil, fmt.Errorf("init capabilities: %w", err)
	}
	caps.Clear(capability.CAPS | capability.BOUNDS | capability.AMBS)
	if c == nil {
		return caps, nil
	}
	sets := []struct {
		which capability.CapType
		names []string
	}{
		{capability.BOUNDING, c.Bounding},
		{capability.EFFECTIVE, c.Effective},
		{capability.PERMITTED, c.Permitted},
		{capability.INHERITABLE, c.Inheritable},
		{capability.AMBIENT, c.Ambient},
	}
	for _, s := range sets {
		for _, n := range s.names {
			cp, ok := capByName(n)
			if !ok {
				// Unknown to this kernel: runc warns and skips.
				continue
			}
			caps.Set(s.which, cp)
		}
	}
	return caps, nil
}

var capNames map[string]capability.Cap

func capByName(n string) (capability.Cap, bool) {
	if capNames == nil {
		capNames = map[string]capability.Cap{}
		last, _ := capability.LastCap()
		for _, c := range capability.ListKnown() {
			if c <= last {
				capNames["CAP_"+strings.ToUpper(c.String())] = c
			}
		}
	}
	c, ok := capNames[strings.ToUpper(n)]
	return c, ok
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// lookPath resolves args[0] with the container's PATH, inside the container.
func (p *process) lookPath() error {
	name := p.spec.Args[0]
	path := ""
	for _, e := range p.env {
		if strings.HasPrefix(e, "PATH=") {
			path = e[5:]
		}
	}
	// exec.LookPath reads PATH from our (cleared) environment.
	os.Setenv("PATH", path)
	resolved, err := exec.LookPath(name)
	os.Unsetenv("PATH")
	if err != nil && !errors.Is(err, exec.ErrDot) {
		return err
	}
	p.path = resolved
	return nil
}

func (p *process) hookState(c *proto.InitConfig, pid int) *specs.State {
	return &specs.State{Version: c.Spec.Version, ID: c.ID, Status: specs.StateCreated, Pid: pid, Bundle: c.Bundle, Annotations: c.Spec.Annotations}
}

// exec applies the last restrictions and replaces the init with the user
// program. It only returns on failure.
func (p *process) exec(s *specs.Spec) error {
	if p.spec.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if s.Linux != nil && s.Linux.Seccomp != nil && !earlySeccomp(s.Linux.Seccomp, p.spec) {
		// Last, so the filter does not have to allow the runtime's own
		// syscalls; only execve itself runs under it.
		if err := loadSeccomp(s.Linux.Seccomp, nil); err != nil {
			return err
		}
	}
	if a := p.spec.ExecCPUAffinity; a != nil && a.Final != "" {
		if err := setAffinity(a.Final); err != nil {
			return err
		}
	}
	err := unix.Exec(p.path, p.spec.Args, p.env)
	return fmt.Errorf("exec %s: %w", p.spec.Args[0], err)
}

// earlySeccomp says whether the filter must be loaded before the process
// drops its privileges: without no_new_privs loading needs CAP_SYS_ADMIN,
// and a notify listener must reach the parent while the sync socket is open.
func earlySeccomp(sc *specs.LinuxSeccomp, p *specs.Process) bool {
	if !p.NoNewPrivileges {
		return true
	}
	for _, sys := range sc.Syscalls {
		if sys.Action == specs.ActNotify {
			return true
		}
	}
	return false
}

// loadSeccomp installs the filter on this thread. A notify listener fd is
// handed to the parent over sock, which passes it on to listenerPath.
func loadSeccomp(sc *specs.LinuxSeccomp, sock *os.File) error {
	fd, err := seccomp.Load(sc)
	if err != nil {
		return fmt.Errorf("load seccomp filter: %w", err)
	}
	if fd >= 0 {
		defer unix.Close(fd)
		if sock == nil {
			return errors.New("seccomp notify listener has nowhere to go")
		}
		if err := proto.Send(sock, proto.Message{Type: proto.MsgSeccomp, Fd: fd}); err != nil {
			return err
		}
	}
	return nil
}

func runHooks(list []specs.Hook, st *specs.State, kind string) error {
	return hooks.Run(list, st, kind)
}

// verifyCwd checks that the cwd lies inside the container's root.
//
// See CVE-2024-21626: a cwd that resolves outside the root (such as
// /proc/self/fd/N of a leaked host directory) shows up in getcwd as
// "(unreachable)/..." or fails with ENOENT, and must never be exec'd in.
// A getcwd blocked by the container's seccomp profile cannot tell, so the
// same check runs once before the filter is loaded (precheckCwd).
func verifyCwd() error {
	wd, err := unix.Getwd()
	if errors.Is(err, unix.ENOENT) || (err == nil && !strings.HasPrefix(wd, "/")) {
		return errors.New("current working directory is outside of container mount namespace root -- possible container breakout detected")
	}
	if err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("verify current working directory: %w", err)
	}
	return nil
}

// precheckCwd enters the cwd as root and verifies it while getcwd is
// certainly allowed. finalize enters it again as the container user.
func precheckCwd(cwd string) error {
	if cwd == "" {
		cwd = "/"
	}
	if err := unix.Chdir(cwd); err != nil {
		// Permission problems are the container user's to report.
		return nil
	}
	wd, err := unix.Getwd()
	if err != nil || !strings.HasPrefix(wd, "/") {
		return errors.New("current working directory is outside of container mount namespace root -- possible container breakout detected")
	}
	return nil
}
