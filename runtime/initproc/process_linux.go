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
	// See CVE-2024-21626: a cwd that resolves outside the container's root
	// shows up as "(unreachable)..." and must never be exec'd in.
	if wd, err := unix.Getwd(); err != nil || !strings.HasPrefix(wd, "/") {
		return fmt.Errorf("current working directory is outside of container mount namespace root")
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
		for _, c := range capability.List() {
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
	if s.Linux != nil && s.Linux.Seccomp != nil && p.spec.NoNewPrivileges {
		// Last, so the filter does not have to allow the runtime's own
		// syscalls; only execve itself runs under it.
		if err := loadSeccomp(s.Linux.Seccomp); err != nil {
			return err
		}
	}
	err := unix.Exec(p.path, p.spec.Args, p.env)
	return fmt.Errorf("exec %s: %w", p.spec.Args[0], err)
}

// loadSeccomp installs the filter on this thread.
func loadSeccomp(sc *specs.LinuxSeccomp) error {
	fd, err := seccomp.Load(sc)
	if err != nil {
		return fmt.Errorf("load seccomp filter: %w", err)
	}
	if fd >= 0 {
		// The notify listener goes to listenerPath in a later change;
		// until then it must not leak into the container.
		unix.Close(fd)
	}
	return nil
}

func runHooks(list []specs.Hook, st *specs.State, kind string) error {
	return hooks.Run(list, st, kind)
}
