// Package cgroups places a container's processes in cgroups and applies the
// limits of an OCI specs.LinuxResources, on cgroup v1, v2 (unified) and hybrid
// hosts, with the cgroupfs semantics runc uses.
//
// A Manager is created with New at `create` time, and later rebuilt from its
// persisted Paths with Load (for exec, update, pause, resume, events, delete).
//
// Paths keys: on v1 every mounted hierarchy appears under each of its
// controller names ("cpu", "cpuacct", ...) and named hierarchies under
// "name=<name>" ("name=systemd"); the v2 (unified) directory uses the key "".
// A hybrid host has both.
package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Modes reported by Mode.
const (
	// ModeV1 is a host with only cgroup v1 hierarchies.
	ModeV1 = "v1"
	// ModeHybrid is a host with v1 hierarchies plus a cgroup2 mount (usually at
	// /sys/fs/cgroup/unified) that holds few or no controllers.
	ModeHybrid = "hybrid"
	// ModeV2 is a host with only the unified hierarchy.
	ModeV2 = "v2"
)

// ErrV1NoUnified is returned by Set when resources carry a `unified` map on a
// v1 or hybrid host, as runc refuses it there.
var ErrV1NoUnified = errors.New("invalid configuration: cannot use unified on cgroup v1")

// Config describes the cgroup of one container.
type Config struct {
	// Path is linux.cgroupsPath. Absolute ("/a/b") is taken under each
	// hierarchy's mount point; relative is joined under the calling process's
	// own cgroup (read from /proc/self/cgroup), as runc's cgroupfs driver does.
	// Empty means the relative path Name.
	Path string
	// Name is the container ID.
	Name string
	// Resources are applied by Set; Apply only uses the realtime CPU values,
	// which must be in place before a process can join. May be nil.
	Resources *specs.LinuxResources
	// Rootless makes permission errors while creating or joining a cgroup
	// non-fatal: the hierarchy is then dropped from Paths.
	Rootless bool
}

// Manager controls the cgroup of one container.
type Manager interface {
	// Apply creates the cgroup directories (every mounted v1 hierarchy,
	// named ones included, and the v2 one) and moves pid into them.
	// A pid <= 0 only creates the directories.
	Apply(pid int) error
	// Set writes the limits in r; nil r is a no-op. It is called after Apply
	// and by `update`.
	Set(r *specs.LinuxResources) error
	// Paths maps each subsystem to its absolute directory ("" for v2).
	Paths() map[string]string
	// GetAllPids returns every pid in the cgroup tree, children included.
	GetAllPids() ([]int, error)
	// Freeze freezes (true) or thaws (false) the cgroup and returns once the
	// kernel reports the new state, or an error if it never settles.
	Freeze(frozen bool) error
	// Frozen reports whether a freeze is in effect on this cgroup. A v1
	// FREEZING state that does not settle counts as frozen (the freeze was
	// asked for, so the container is paused and resume must thaw it); a v1
	// cgroup frozen only through an ancestor counts as not frozen, as in runc.
	Frozen() (bool, error)
	// Destroy removes every directory (children first), retrying EBUSY
	// briefly; it kills nothing. Missing directories are not an error.
	Destroy() error
	// Stats samples usage counters, shaped like runc's `events --stats` data.
	Stats() (*Stats, error)
	// NotifyOOM watches the memory cgroup for OOM events: the channel gets
	// a value per event and is closed when the cgroup goes away (v2: or has
	// no processes left) or ctx is done. It fails when there is no memory
	// cgroup (see the method's documentation for the v1 and v2 mechanisms).
	NotifyOOM(ctx context.Context) (<-chan struct{}, error)
}

// Option changes where New and Mode look for the host's cgroup layout; the
// defaults read /proc/self/mountinfo and /proc/self/cgroup. Tests use them to
// describe a fake hierarchy under a temporary directory.
type Option func(*options)

type options struct {
	mountinfo  io.Reader
	procCgroup io.Reader
}

// WithMountinfo reads the mount table from r (the /proc/self/mountinfo
// format) instead of /proc/self/mountinfo. Mount points may lie anywhere, for
// example in a temporary directory.
func WithMountinfo(r io.Reader) Option {
	return func(o *options) { o.mountinfo = r }
}

// WithProcCgroup reads the caller's own cgroup membership from r (the
// /proc/self/cgroup format) instead of /proc/self/cgroup; it is used only to
// resolve relative paths.
func WithProcCgroup(r io.Reader) Option {
	return func(o *options) { o.procCgroup = r }
}

// Mode returns ModeV1, ModeHybrid or ModeV2 for this host, or an error if no
// cgroup filesystem is mounted.
func Mode(opts ...Option) (string, error) {
	o := buildOptions(opts)
	h, err := detect(o)
	if err != nil {
		return "", err
	}
	return h.mode(), nil
}

// New resolves the directories of the cgroup described by c on this host;
// nothing is created until Apply.
func New(c Config, opts ...Option) (Manager, error) {
	o := buildOptions(opts)
	h, err := detect(o)
	if err != nil {
		return nil, err
	}
	inner, err := innerPath(c)
	if err != nil {
		return nil, err
	}
	var own map[string]string
	if !isAbs(inner) {
		if own, err = readOwnCgroup(o); err != nil {
			return nil, err
		}
	}
	m := &manager{
		mode:     h.mode(),
		paths:    map[string]string{},
		rootless: c.Rootless,
		res:      c.Resources,
	}
	if m.mode != ModeV2 {
		for key, hier := range h.v1 {
			dir, err := resolveDir(hier, key, inner, own)
			if err != nil {
				return nil, err
			}
			m.paths[key] = dir
		}
	}
	if h.v2 != nil {
		dir, err := resolveDir(h.v2, "", inner, own)
		if err != nil {
			if m.mode == ModeV2 {
				return nil, err
			}
			// A hybrid host's unified hierarchy is a courtesy: without our own
			// entry for it we just stay out of it.
			return m, nil
		}
		m.paths[""] = dir
		m.unifiedRoot = h.v2.mountpoint
	}
	return m, nil
}

// Load rebuilds a Manager from the map a previous Manager's Paths returned.
func Load(paths map[string]string) (Manager, error) {
	if len(paths) == 0 {
		return nil, errors.New("load cgroup: no paths")
	}
	m := &manager{paths: map[string]string{}}
	for k, v := range paths {
		if !isAbs(v) {
			return nil, fmt.Errorf("load cgroup: path %q for %q is not absolute", v, k)
		}
		m.paths[k] = v
	}
	_, hasV2 := m.paths[""]
	switch {
	case hasV2 && len(m.paths) == 1:
		m.mode = ModeV2
	case hasV2:
		m.mode = ModeHybrid
	default:
		m.mode = ModeV1
	}
	return m, nil
}

func buildOptions(opts []Option) *options {
	o := &options{}
	for _, f := range opts {
		f(o)
	}
	return o
}
