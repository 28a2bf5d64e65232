package spec

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrInvalid is wrapped by every error Validate and ValidateProcess return, so callers can
// tell a bad config from an I/O failure with errors.Is. It adds nothing to the message.
var ErrInvalid = errors.New("invalid configuration")

// invalid formats a validation error that wraps ErrInvalid without showing its text:
// "%.0w" prints the wrapped error with zero width.
func invalid(format string, args ...any) error {
	return fmt.Errorf(format+"%.0w", append(args, ErrInvalid)...)
}

// semver is SemVer 2.0.0 restricted to major version 1: the runtime implements runtime-spec
// 1.x, and the spec promises compatibility within a major version.
var (
	// Compiled on first use: a package-level MustCompile runs in every
	// cubo-runc process, container inits included.
	semver = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	})
)

// Validate checks a config the way runc does before it creates anything, and returns the
// first problem as a one-line error naming the offending field (see the package doc for the
// wording). All errors wrap ErrInvalid.
//
// bundle is the bundle directory that relative paths (root.path) resolve against. With a
// non-empty bundle Validate also checks that the root filesystem exists and is a directory
// (runc's "invalid rootfs: ..."); with an empty bundle only the config itself is checked, which
// suits a manager that validates a config before it mounts the rootfs.
//
// Relative mount destinations are accepted, as runc 1.1 does (with a warning): they are
// relative to the container's "/", and the runtime resolves them with MountDestination.
// process.terminal needs no console here: that is the runtime's business at create time.
func Validate(s *specs.Spec, bundle string) error {
	if s == nil {
		return invalid("config must not be empty")
	}
	if err := checkVersion(s.Version); err != nil {
		return err
	}
	if s.Root == nil || s.Root.Path == "" {
		return invalid("root.path must not be empty")
	}
	if bundle != "" {
		if err := checkRootfs(s.Root.Path, bundle); err != nil {
			return err
		}
	}
	// process is optional in the spec: create must then succeed and start fail (runtime-tools'
	// start test checks this), so refusing a missing process is left to the runtime. runc
	// refuses it at create with ValidateProcess's "process property must not be empty".
	if s.Process != nil {
		if err := ValidateProcess(s.Process); err != nil {
			return err
		}
	}
	if err := checkMounts(s.Mounts); err != nil {
		return err
	}
	if err := checkHooks(s.Hooks); err != nil {
		return err
	}
	for k := range s.Annotations {
		if k == "" {
			return invalid("annotations: keys must not be empty")
		}
	}
	linux := s.Linux
	if linux == nil {
		// No linux section means no new namespaces: the checks below still apply, so that
		// a hostname without a UTS namespace is refused the same way.
		linux = &specs.Linux{}
	}
	return checkLinux(s, linux)
}

// ValidateProcess checks a process object: config.json's "process", or the JSON file that
// `exec --process` reads. The first three checks and their wording are runc's, in runc's
// order; the rest name the field.
func ValidateProcess(p *specs.Process) error {
	if p == nil {
		return invalid("process property must not be empty")
	}
	if p.Cwd == "" {
		return invalid("Cwd property must not be empty")
	}
	if !filepath.IsAbs(p.Cwd) {
		return invalid("Cwd must be an absolute path")
	}
	if len(p.Args) == 0 {
		return invalid("args must not be empty")
	}
	// (uid_t)-1 means "unchanged" to setresuid(2): a config asking for
	// 4294967295 would silently run as root. runc refuses the upper half.
	const maxID = 1<<31 - 1
	if p.User.UID > maxID || p.User.GID > maxID {
		return invalid("process.user: uids and gids must be in range 0-%d", maxID)
	}
	for i, g := range p.User.AdditionalGids {
		if g > maxID {
			return invalid("process.user.additionalGids[%d]: uids and gids must be in range 0-%d", i, maxID)
		}
	}
	for i, e := range p.Env {
		if strings.IndexByte(e, 0) >= 0 {
			return invalid("process.env[%d]: %q contains a NUL byte", i, e)
		}
	}
	seen := make(map[string]bool, len(p.Rlimits))
	for i, r := range p.Rlimits {
		if _, ok := Rlimits[r.Type]; !ok {
			return invalid("process.rlimits[%d]: unknown rlimit type %q", i, r.Type)
		}
		if seen[r.Type] {
			return invalid("process.rlimits[%d]: duplicate rlimit type %q", i, r.Type)
		}
		seen[r.Type] = true
		if r.Soft > r.Hard {
			return invalid("process.rlimits[%d]: %s soft limit %d exceeds hard limit %d", i, r.Type, r.Soft, r.Hard)
		}
	}
	if c := p.Capabilities; c != nil {
		sets := []struct {
			name string
			caps []string
		}{
			{"bounding", c.Bounding},
			{"effective", c.Effective},
			{"inheritable", c.Inheritable},
			{"permitted", c.Permitted},
			{"ambient", c.Ambient},
		}
		for _, set := range sets {
			for i, name := range set.caps {
				if _, ok := CapabilityNumber(name); !ok {
					return invalid("process.capabilities.%s[%d]: unknown capability %q", set.name, i, name)
				}
			}
		}
	}
	if p.OOMScoreAdj != nil && (*p.OOMScoreAdj < -1000 || *p.OOMScoreAdj > 1000) {
		return invalid("process.oomScoreAdj: %d is outside [-1000, 1000]", *p.OOMScoreAdj)
	}
	if err := checkScheduler(p.Scheduler); err != nil {
		return err
	}
	if io := p.IOPriority; io != nil {
		switch io.Class {
		case specs.IOPRIO_CLASS_RT, specs.IOPRIO_CLASS_BE, specs.IOPRIO_CLASS_IDLE:
		default:
			return invalid("process.ioPriority.class: unknown class %q", io.Class)
		}
		if io.Priority < 0 || io.Priority > 7 {
			return invalid("process.ioPriority.priority: %d is outside [0, 7]", io.Priority)
		}
	}
	return nil
}

func checkVersion(v string) error {
	if v == "" {
		return invalid("ociVersion must not be empty")
	}
	if !semver().MatchString(v) {
		return invalid("ociVersion %q is not a semantic version", v)
	}
	if !strings.HasPrefix(v, "1.") {
		return invalid("ociVersion %q is not supported: want 1.x.y (up to %s)", v, specs.Version)
	}
	return nil
}

// checkRootfs wants the root filesystem to exist and be a directory. Symlinks are allowed:
// the runtime resolves the path once, at create.
func checkRootfs(root, bundle string) error {
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundle, root)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return invalid("invalid rootfs: %w", err)
	}
	if !fi.IsDir() {
		return invalid("invalid rootfs: %s is not a directory", root)
	}
	return nil
}

func checkScheduler(s *specs.Scheduler) error {
	if s == nil {
		return nil
	}
	switch s.Policy {
	case "":
		return invalid("process.scheduler.policy must not be empty")
	case specs.SchedOther, specs.SchedFIFO, specs.SchedRR, specs.SchedBatch, specs.SchedISO,
		specs.SchedIdle, specs.SchedDeadline:
	default:
		return invalid("process.scheduler.policy: unknown policy %q", s.Policy)
	}
	if s.Nice < -20 || s.Nice > 19 {
		return invalid("process.scheduler.nice: %d is outside [-20, 19]", s.Nice)
	}
	if s.Priority != 0 && s.Policy != specs.SchedFIFO && s.Policy != specs.SchedRR {
		return invalid("process.scheduler.priority can only be specified for SCHED_FIFO or SCHED_RR")
	}
	if s.Policy != specs.SchedDeadline && (s.Runtime != 0 || s.Deadline != 0 || s.Period != 0) {
		return invalid("process.scheduler runtime/deadline/period can only be specified for SCHED_DEADLINE")
	}
	for i, f := range s.Flags {
		switch f {
		case specs.SchedFlagResetOnFork, specs.SchedFlagReclaim, specs.SchedFlagDLOverrun,
			specs.SchedFlagKeepPolicy, specs.SchedFlagKeepParams, specs.SchedFlagUtilClampMin,
			specs.SchedFlagUtilClampMax:
		default:
			return invalid("process.scheduler.flags[%d]: unknown flag %q", i, f)
		}
	}
	return nil
}

// MountDestination returns where a mount goes in the container: destinations are absolute
// in the spec, but runc 1.1 takes a relative one as relative to "/", and so does Cubo.
func MountDestination(dest string) string {
	return filepath.Join("/", dest)
}

func checkMounts(mounts []specs.Mount) error {
	for i, m := range mounts {
		if m.Destination == "" {
			return invalid("mounts[%d].destination must not be empty", i)
		}
		if strings.IndexByte(m.Destination, 0) >= 0 || strings.IndexByte(m.Source, 0) >= 0 {
			return invalid("mounts[%d]: paths must not contain NUL bytes", i)
		}
		if (len(m.UIDMappings) == 0) != (len(m.GIDMappings) == 0) {
			return invalid("mounts[%d]: uidMappings and gidMappings must be set together", i)
		}
	}
	return nil
}

// checkHooks wants absolute hook paths (the runtime runs them from an unknown cwd) and
// positive timeouts.
func checkHooks(h *specs.Hooks) error {
	if h == nil {
		return nil
	}
	kinds := []struct {
		name  string
		hooks []specs.Hook
	}{
		//lint:ignore SA1019 Docker still sends prestart hooks
		{"prestart", h.Prestart},
		{"createRuntime", h.CreateRuntime},
		{"createContainer", h.CreateContainer},
		{"startContainer", h.StartContainer},
		{"poststart", h.Poststart},
		{"poststop", h.Poststop},
	}
	for _, k := range kinds {
		for i, hook := range k.hooks {
			if !filepath.IsAbs(hook.Path) {
				return invalid("hooks.%s[%d].path %q must be an absolute path", k.name, i, hook.Path)
			}
			if hook.Timeout != nil && *hook.Timeout <= 0 {
				return invalid("hooks.%s[%d].timeout must be positive, got %d", k.name, i, *hook.Timeout)
			}
		}
	}
	return nil
}

// namespaceTypes are the namespace types runtime-spec 1.3 defines for Linux.
var namespaceTypes = []specs.LinuxNamespaceType{
	specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace, specs.IPCNamespace,
	specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace,
}

// ipcSysctls are the kernel.* sysctls an IPC namespace owns (besides fs.mqueue.*).
var ipcSysctls = []string{
	"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
}

func checkLinux(s *specs.Spec, l *specs.Linux) error {
	has := map[specs.LinuxNamespaceType]*specs.LinuxNamespace{}
	for i := range l.Namespaces {
		ns := &l.Namespaces[i]
		if !slices.Contains(namespaceTypes, ns.Type) {
			return invalid("linux.namespaces[%d]: unknown namespace type %q", i, ns.Type)
		}
		if has[ns.Type] != nil {
			return invalid("linux.namespaces[%d]: duplicated namespace type %q", i, ns.Type)
		}
		if ns.Path != "" && !filepath.IsAbs(ns.Path) {
			return invalid("linux.namespaces[%d].path %q must be an absolute path", i, ns.Path)
		}
		has[ns.Type] = ns
	}

	// runc's wording: containerd, podman and people grep for these.
	if s.Hostname != "" && has[specs.UTSNamespace] == nil {
		return invalid("unable to set hostname without a private UTS namespace")
	}
	if s.Domainname != "" && has[specs.UTSNamespace] == nil {
		return invalid("unable to set domainname without a private UTS namespace")
	}

	user := has[specs.UserNamespace]
	if user == nil && (len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0) {
		return invalid("User namespace mappings specified, but USER namespace isn't enabled in the config")
	}
	if user != nil && user.Path == "" && (len(l.UIDMappings) == 0 || len(l.GIDMappings) == 0) {
		return invalid("linux.uidMappings and linux.gidMappings are required for a new user namespace")
	}
	for _, m := range []struct {
		name string
		maps []specs.LinuxIDMapping
	}{{"uidMappings", l.UIDMappings}, {"gidMappings", l.GIDMappings}} {
		for i, idm := range m.maps {
			if idm.Size == 0 {
				return invalid("linux.%s[%d].size must not be 0", m.name, i)
			}
		}
	}
	if len(l.TimeOffsets) > 0 && has[specs.TimeNamespace] == nil {
		return invalid("time namespace offsets specified, but time namespace isn't enabled in the config")
	}

	if (len(l.MaskedPaths) > 0 || len(l.ReadonlyPaths) > 0) && has[specs.MountNamespace] == nil {
		return invalid("unable to restrict sys entries without a private MNT namespace")
	}
	for i, p := range l.MaskedPaths {
		if !filepath.IsAbs(p) {
			return invalid("linux.maskedPaths[%d] %q must be an absolute path", i, p)
		}
	}
	for i, p := range l.ReadonlyPaths {
		if !filepath.IsAbs(p) {
			return invalid("linux.readonlyPaths[%d] %q must be an absolute path", i, p)
		}
	}

	if err := checkSysctls(l.Sysctl, has); err != nil {
		return err
	}
	if err := checkCgroupsPath(l.CgroupsPath); err != nil {
		return err
	}
	switch l.RootfsPropagation {
	case "", "shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable":
	default:
		return invalid("linux.rootfsPropagation %q is not supported", l.RootfsPropagation)
	}
	for i, d := range l.Devices {
		if !filepath.IsAbs(d.Path) {
			return invalid("linux.devices[%d].path %q must be an absolute path", i, d.Path)
		}
		switch d.Type {
		case "c", "b", "u", "p":
		default:
			return invalid("linux.devices[%d].type %q is not one of c, b, u, p", i, d.Type)
		}
	}
	if r := l.Resources; r != nil {
		for i, d := range r.Devices {
			switch d.Type {
			case "", "a", "c", "b":
			default:
				return invalid("linux.resources.devices[%d].type %q is not one of a, c, b", i, d.Type)
			}
			if strings.Trim(d.Access, "rwm") != "" {
				return invalid("linux.resources.devices[%d].access %q is not a combination of r, w, m", i, d.Access)
			}
		}
	}
	return checkSeccomp(l.Seccomp)
}

// checkSysctls follows runc: /proc/sys is only partly namespaced, so a sysctl is allowed only
// when the container has its own instance of the namespace that owns it.
func checkSysctls(sysctls map[string]string, has map[specs.LinuxNamespaceType]*specs.LinuxNamespace) error {
	// Sorted, so that the same config always reports the same sysctl.
	for _, key := range slices.Sorted(maps.Keys(sysctls)) {
		s := dotted(key)
		if slices.Contains(ipcSysctls, s) || strings.HasPrefix(s, "fs.mqueue.") {
			if has[specs.IPCNamespace] == nil {
				return invalid("sysctl %q is not allowed in the hosts ipc namespace", s)
			}
			continue
		}
		if strings.HasPrefix(s, "net.") {
			hostnet, err := isHostNet(has[specs.NetworkNamespace])
			if err != nil {
				return invalid("invalid netns path: %w", err)
			}
			if hostnet {
				return invalid("sysctl %q not allowed in host network namespace", s)
			}
			continue
		}
		if has[specs.UTSNamespace] != nil {
			switch s {
			case "kernel.domainname":
				continue
			case "kernel.hostname":
				return invalid("sysctl %q is not allowed as it conflicts with the OCI %q field", s, "hostname")
			}
		}
		return invalid("sysctl %q is not in a separate kernel namespace", s)
	}
	return nil
}

// dotted converts a sysctl written with '/' separators (sysctl.d(5) allows
// "net/ipv4/conf/eth0.100/rp_filter") to the dotted form, swapping the dots inside names the
// other way so that the two spellings compare equal.
func dotted(key string) string {
	i := strings.IndexAny(key, "./")
	if i < 0 || key[i] == '.' {
		return key
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, key)
}

// isHostNet reports whether the container would share the caller's network namespace: no
// network namespace at all, or a path to the one the caller is in ("host" means "current").
func isHostNet(ns *specs.LinuxNamespace) (bool, error) {
	if ns == nil {
		return true, nil
	}
	if ns.Path == "" {
		return false, nil
	}
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return false, err
	}
	other, err := os.Stat(ns.Path)
	if err != nil {
		return false, err
	}
	return os.SameFile(self, other), nil
}

// checkCgroupsPath refuses what can only be a mistake or an attempt to leave the cgroup
// tree. Both forms pass: a path ("/a/b" or "a/b", the cgroupfs driver) and
// "slice:prefix:name" (the systemd driver).
func checkCgroupsPath(p string) error {
	if p == "" {
		return nil
	}
	if strings.IndexByte(p, 0) >= 0 {
		return invalid("linux.cgroupsPath %q must not contain NUL bytes", p)
	}
	for _, part := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == ':' }) {
		if part == ".." {
			return invalid("linux.cgroupsPath %q must not contain \"..\"", p)
		}
	}
	if strings.Count(p, ":") != 0 && strings.Count(p, ":") != 2 {
		return invalid("linux.cgroupsPath %q: want a path or slice:prefix:name", p)
	}
	return nil
}

var (
	seccompActions = []specs.LinuxSeccompAction{
		specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap, specs.ActErrno,
		specs.ActTrace, specs.ActAllow, specs.ActLog, specs.ActNotify,
	}
	seccompOps = []specs.LinuxSeccompOperator{
		specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
		specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual,
	}
	seccompFlags = []specs.LinuxSeccompFlag{
		specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow,
		specs.LinuxSeccompFlagWaitKillableRecv, "SECCOMP_FILTER_FLAG_TSYNC",
	}
	seccompArch = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^SCMP_ARCH_[A-Z0-9_]+$`) })
)

func checkSeccomp(sc *specs.LinuxSeccomp) error {
	if sc == nil {
		return nil
	}
	if !slices.Contains(seccompActions, sc.DefaultAction) {
		return invalid("linux.seccomp.defaultAction: unknown action %q", sc.DefaultAction)
	}
	for i, a := range sc.Architectures {
		if !seccompArch().MatchString(string(a)) {
			return invalid("linux.seccomp.architectures[%d]: unknown architecture %q", i, a)
		}
	}
	for i, f := range sc.Flags {
		if !slices.Contains(seccompFlags, f) {
			return invalid("linux.seccomp.flags[%d]: unknown flag %q", i, f)
		}
	}
	notify := sc.DefaultAction == specs.ActNotify
	for i, sys := range sc.Syscalls {
		if len(sys.Names) == 0 {
			return invalid("linux.seccomp.syscalls[%d].names must not be empty", i)
		}
		for j, n := range sys.Names {
			if n == "" {
				return invalid("linux.seccomp.syscalls[%d].names[%d] must not be empty", i, j)
			}
		}
		if !slices.Contains(seccompActions, sys.Action) {
			return invalid("linux.seccomp.syscalls[%d].action: unknown action %q", i, sys.Action)
		}
		notify = notify || sys.Action == specs.ActNotify
		for j, a := range sys.Args {
			if a.Index > 5 {
				return invalid("linux.seccomp.syscalls[%d].args[%d].index %d is outside [0, 5]", i, j, a.Index)
			}
			if !slices.Contains(seccompOps, a.Op) {
				return invalid("linux.seccomp.syscalls[%d].args[%d].op: unknown operator %q", i, j, a.Op)
			}
		}
	}
	if notify && sc.ListenerPath == "" {
		return invalid("linux.seccomp.listenerPath must be set when an action is SCMP_ACT_NOTIFY")
	}
	return nil
}
