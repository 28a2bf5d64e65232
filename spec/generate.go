package spec

import (
	"fmt"
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Opt changes a config under construction; Generate applies them in order. An Opt
// returns an error wrapping ErrInvalid when its input cannot be expressed in a config.
type Opt func(*specs.Spec) error

// defaultPath is the PATH a process gets when neither the image nor the user sets one.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// containerCaps is the capability set a manager container gets: docker's and podman's
// default, so package managers (chown, setuid helpers) work as users expect, while
// nothing that reaches the host (SYS_ADMIN, NET_ADMIN, SYS_MODULE...) is granted.
var containerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Generate returns a config for a manager container: Default made writable and
// non-terminal, with the container capability set, PATH only in the environment, and
// then opts applied in order. It returns the first error an Opt returns.
func Generate(opts ...Opt) (*specs.Spec, error) {
	s := Default()
	// Everything a manager config uses exists since runtime-spec 1.0.2, and older
	// runtimes refuse versions they do not know (crun 1.8: "unknown version specified").
	s.Version = "1.0.2"
	s.Root.Readonly = false
	s.Process.Terminal = false
	s.Process.Env = []string{defaultPath}
	s.Process.NoNewPrivileges = false
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:  slices.Clone(containerCaps),
		Effective: slices.Clone(containerCaps),
		Permitted: slices.Clone(containerCaps),
	}
	s.Hostname = ""
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ImageConfig is the part of an OCI image's config (image-spec's v1.ImageConfig) that
// becomes runtime config. It is a type of its own so that cubo-runc, which links this
// package, does not link image-spec and go-digest, whose package init compiles
// regexps in every runtime process.
type ImageConfig struct {
	Env        []string
	Entrypoint []string
	Cmd        []string
	WorkingDir string
	Labels     map[string]string
}

// WithImageConfig applies an image's Env, Entrypoint + Cmd, WorkingDir and Labels (as
// annotations). The image's User needs the rootfs to resolve names and is left to
// WithUser; StopSignal is not part of a runtime config and is the manager's business.
func WithImageConfig(c ImageConfig) Opt {
	return func(s *specs.Spec) error {
		for _, kv := range c.Env {
			if err := setEnv(s, kv); err != nil {
				return err
			}
		}
		args := append(slices.Clone(c.Entrypoint), c.Cmd...)
		if len(args) > 0 {
			s.Process.Args = args
		}
		if c.WorkingDir != "" {
			s.Process.Cwd = c.WorkingDir
		}
		for k, v := range c.Labels {
			if s.Annotations == nil {
				s.Annotations = map[string]string{}
			}
			s.Annotations[k] = v
		}
		return nil
	}
}

// WithProcessArgs replaces the process arguments.
func WithProcessArgs(args ...string) Opt {
	return func(s *specs.Spec) error {
		if len(args) == 0 {
			return invalid("process args must not be empty")
		}
		s.Process.Args = slices.Clone(args)
		return nil
	}
}

// WithEnv sets environment variables given as KEY=VALUE, replacing an earlier value of
// the same key. A bare KEY or an empty key is an error: a manager has no host
// environment to copy it from that the user would expect.
func WithEnv(env ...string) Opt {
	return func(s *specs.Spec) error {
		for _, kv := range env {
			if err := setEnv(s, kv); err != nil {
				return err
			}
		}
		return nil
	}
}

func setEnv(s *specs.Spec, kv string) error {
	k, _, ok := strings.Cut(kv, "=")
	if !ok || k == "" || strings.ContainsAny(k, " \t\n\x00") {
		return invalid("env %q: want KEY=VALUE", kv)
	}
	for i, e := range s.Process.Env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			s.Process.Env[i] = kv
			return nil
		}
	}
	s.Process.Env = append(s.Process.Env, kv)
	return nil
}

// WithCwd sets the working directory, which must be absolute.
func WithCwd(dir string) Opt {
	return func(s *specs.Spec) error {
		if !path.IsAbs(dir) {
			return invalid("workdir %q: must be an absolute path", dir)
		}
		s.Process.Cwd = dir
		return nil
	}
}

// WithHostname sets the hostname (a private UTS namespace is in the default config).
func WithHostname(name string) Opt {
	return func(s *specs.Spec) error {
		if len(name) > 64 || strings.ContainsAny(name, "/ \t\n\x00") {
			return invalid("hostname %q: not a valid host name", name)
		}
		s.Hostname = name
		return nil
	}
}

// WithUser sets the numeric user, group and supplementary groups of the process.
func WithUser(uid, gid uint32, additionalGids []uint32) Opt {
	return func(s *specs.Spec) error {
		s.Process.User = specs.User{UID: uid, GID: gid, AdditionalGids: slices.Clone(additionalGids)}
		return nil
	}
}

// WithTerminal gives the process a pseudo-terminal (the runtime then needs a console socket).
func WithTerminal(on bool) Opt {
	return func(s *specs.Spec) error {
		s.Process.Terminal = on
		if on {
			return setEnv(s, "TERM=xterm")
		}
		return nil
	}
}

// WithReadonlyRootfs makes the root filesystem read-only.
func WithReadonlyRootfs(ro bool) Opt {
	return func(s *specs.Spec) error { s.Root.Readonly = ro; return nil }
}

// WithRootfs sets the root path (relative to the bundle or absolute).
func WithRootfs(p string) Opt {
	return func(s *specs.Spec) error { s.Root.Path = p; return nil }
}

// WithBind adds a recursive bind mount of the host path src at dst; ro makes the kernel
// refuse writes through it. src must be absolute; its existence is the caller's check.
func WithBind(src, dst string, ro bool) Opt {
	return func(s *specs.Spec) error {
		if !path.IsAbs(src) || !path.IsAbs(dst) {
			return invalid("bind %s:%s: both paths must be absolute", src, dst)
		}
		opts := []string{"rbind", "rprivate"}
		if ro {
			opts = append(opts, "ro")
		}
		addMount(s, specs.Mount{Destination: path.Clean(dst), Type: "bind", Source: src, Options: opts})
		return nil
	}
}

// WithTmpfs mounts a tmpfs at dst with extra mount options (e.g. "size=64m").
func WithTmpfs(dst string, options ...string) Opt {
	return func(s *specs.Spec) error {
		if !path.IsAbs(dst) {
			return invalid("tmpfs %q: destination must be an absolute path", dst)
		}
		opts := append([]string{"nosuid", "nodev"}, options...)
		addMount(s, specs.Mount{Destination: path.Clean(dst), Type: "tmpfs", Source: "tmpfs", Options: opts})
		return nil
	}
}

// addMount appends m, first dropping a mount with the same destination, so a user mount
// over /dev/shm or a volume on /etc/hosts wins over the defaults.
func addMount(s *specs.Spec, m specs.Mount) {
	s.Mounts = slices.DeleteFunc(s.Mounts, func(o specs.Mount) bool { return path.Clean(o.Destination) == m.Destination })
	s.Mounts = append(s.Mounts, m)
}

// WithMemoryLimit caps the container's memory in bytes (0 leaves it unlimited).
func WithMemoryLimit(bytes int64) Opt {
	return func(s *specs.Spec) error {
		if bytes < 0 {
			return invalid("memory limit %d: must not be negative", bytes)
		}
		if bytes == 0 {
			return nil
		}
		res := resources(s)
		if res.Memory == nil {
			res.Memory = &specs.LinuxMemory{}
		}
		res.Memory.Limit = &bytes
		return nil
	}
}

// WithCPUs limits the container to cpus CPUs' worth of time (CFS quota over a 100 ms
// period); 0 leaves it unlimited.
func WithCPUs(cpus float64) Opt {
	return func(s *specs.Spec) error {
		if cpus < 0 {
			return invalid("cpus %g: must not be negative", cpus)
		}
		if cpus == 0 {
			return nil
		}
		period := uint64(100000)
		quota := int64(cpus * float64(period))
		if quota < 1000 {
			return invalid("cpus %g: below the kernel's 1 ms minimum quota", cpus)
		}
		res := resources(s)
		if res.CPU == nil {
			res.CPU = &specs.LinuxCPU{}
		}
		res.CPU.Period = &period
		res.CPU.Quota = &quota
		return nil
	}
}

// WithPidsLimit caps the number of tasks in the container; 0 leaves it unlimited.
func WithPidsLimit(n int64) Opt {
	return func(s *specs.Spec) error {
		if n < 0 {
			return invalid("pids limit %d: must not be negative", n)
		}
		if n == 0 {
			return nil
		}
		resources(s).Pids = &specs.LinuxPids{Limit: &n}
		return nil
	}
}

func resources(s *specs.Spec) *specs.LinuxResources {
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	return s.Linux.Resources
}

// WithCgroupsPath sets linux.cgroupsPath.
func WithCgroupsPath(p string) Opt {
	return func(s *specs.Spec) error { s.Linux.CgroupsPath = p; return nil }
}

// WithNetNSPath makes the container join the network namespace at p (a bind-mounted
// nsfs file, as a network plugin leaves it); this is where bridge networking plugs in.
func WithNetNSPath(p string) Opt {
	return func(s *specs.Spec) error {
		if !path.IsAbs(p) {
			return invalid("network namespace path %q: must be absolute", p)
		}
		setNamespace(s, specs.NetworkNamespace, p)
		return nil
	}
}

// WithPrivateNetwork gives the container a new network namespace with only loopback.
func WithPrivateNetwork() Opt {
	return func(s *specs.Spec) error { setNamespace(s, specs.NetworkNamespace, ""); return nil }
}

// WithHostNetwork shares the host's network namespace (no network namespace entry).
func WithHostNetwork() Opt {
	return func(s *specs.Spec) error {
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
			return ns.Type == specs.NetworkNamespace
		})
		return nil
	}
}

func setNamespace(s *specs.Spec, t specs.LinuxNamespaceType, p string) {
	for i := range s.Linux.Namespaces {
		if s.Linux.Namespaces[i].Type == t {
			s.Linux.Namespaces[i].Path = p
			return
		}
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t, Path: p})
}

// WithAnnotations adds annotations.
func WithAnnotations(a map[string]string) Opt {
	return func(s *specs.Spec) error {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		for k, v := range a {
			s.Annotations[k] = v
		}
		return nil
	}
}

// ParseBytes parses a size such as "512m", "1g", "100k" or "1048576" (binary units, as
// docker's --memory).
func ParseBytes(v string) (int64, error) {
	if v == "" {
		return 0, invalid("size: empty")
	}
	mult := int64(1)
	s := strings.ToLower(v)
	s = strings.TrimSuffix(s, "b")
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "g"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != s {
		return 0, invalid("size %q: want a number with an optional k, m or g suffix", v)
	}
	return n * mult, nil
}
