package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// knownControllers are the v1 controller names that may appear among a cgroup
// mount's super options; anything else there (xattr, release_agent=...,
// noprefix, clone_children, cpuset_v2_mode) is a mount option.
var knownControllers = map[string]bool{
	"cpuset": true, "cpu": true, "cpuacct": true, "blkio": true, "memory": true,
	"devices": true, "freezer": true, "net_cls": true, "net_prio": true,
	"perf_event": true, "hugetlb": true, "pids": true, "rdma": true, "misc": true,
	"debug": true,
}

// hierarchy is one cgroup mount.
type hierarchy struct {
	mountpoint string
	// root is the cgroup path the mount exposes (mountinfo field 4); it is not
	// "/" when the mount was made inside a container without a cgroup namespace.
	root string
}

type hostLayout struct {
	v1 map[string]*hierarchy // by subsystem key ("memory", "name=systemd")
	v2 *hierarchy
}

func (h *hostLayout) mode() string {
	controllers := false
	for k := range h.v1 {
		if !strings.HasPrefix(k, "name=") {
			controllers = true
			break
		}
	}
	switch {
	case h.v2 != nil && !controllers:
		return ModeV2
	case h.v2 != nil:
		return ModeHybrid
	default:
		return ModeV1
	}
}

func detect(o *options) (*hostLayout, error) {
	r := o.mountinfo
	if r == nil {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return nil, fmt.Errorf("read mount table: %w", err)
		}
		defer f.Close()
		r = f
	}
	mounts, err := mountinfo.GetMountsFromReader(r, mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("parse mount table: %w", err)
	}
	h := &hostLayout{v1: map[string]*hierarchy{}}
	for _, mi := range mounts {
		hier := &hierarchy{mountpoint: mi.Mountpoint, root: mi.Root}
		if mi.FSType == "cgroup2" {
			// The same hierarchy may be mounted more than once (bind mounts);
			// the canonical places win.
			if h.v2 == nil || isCanonical(mi.Mountpoint) && !isCanonical(h.v2.mountpoint) {
				h.v2 = hier
			}
			continue
		}
		for _, opt := range strings.Split(mi.VFSOptions, ",") {
			if !knownControllers[opt] && !strings.HasPrefix(opt, "name=") {
				continue
			}
			if old, ok := h.v1[opt]; ok && (isCanonical(old.mountpoint) || !isCanonical(mi.Mountpoint)) {
				continue
			}
			h.v1[opt] = hier
		}
	}
	if len(h.v1) == 0 && h.v2 == nil {
		return nil, errors.New("detect cgroups: no cgroup filesystem mounted")
	}
	return h, nil
}

func isCanonical(mountpoint string) bool {
	return mountpoint == "/sys/fs/cgroup" || filepath.Dir(mountpoint) == "/sys/fs/cgroup"
}

// readOwnCgroup parses /proc/self/cgroup into subsystem key -> cgroup path;
// the v2 entry ("0::/path") has the key "".
func readOwnCgroup(o *options) (map[string]string, error) {
	r := o.procCgroup
	if r == nil {
		f, err := os.Open("/proc/self/cgroup")
		if err != nil {
			return nil, fmt.Errorf("read own cgroup: %w", err)
		}
		defer f.Close()
		r = f
	}
	return parseProcCgroup(r)
}

func parseProcCgroup(r io.Reader) (map[string]string, error) {
	own := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("parse own cgroup: bad line %q", line)
		}
		if parts[0] == "0" && parts[1] == "" {
			own[""] = parts[2]
			continue
		}
		for _, k := range strings.Split(parts[1], ",") {
			own[k] = parts[2]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse own cgroup: %w", err)
	}
	return own, nil
}

// innerPath is the container's cgroup path relative to a hierarchy root (when
// absolute) or to the caller's own cgroup (when relative), cleaned so that
// ".." cannot climb above either.
func innerPath(c Config) (string, error) {
	p := c.Path
	if p == "" {
		p = c.Name
	}
	if p == "" {
		return "", errors.New("resolve cgroup path: neither path nor name given")
	}
	if isAbs(p) {
		return filepath.Clean(p), nil
	}
	rel, err := filepath.Rel("/", filepath.Clean("/"+p))
	if err != nil {
		return "", fmt.Errorf("resolve cgroup path %q: %w", p, err)
	}
	if rel == "." {
		return "", fmt.Errorf("resolve cgroup path %q: empty after cleaning", p)
	}
	return rel, nil
}

func isAbs(p string) bool { return strings.HasPrefix(p, "/") }

// resolveDir maps inner onto one hierarchy. A relative inner lands under the
// caller's own cgroup in that hierarchy, seen through the mount's root.
func resolveDir(h *hierarchy, key, inner string, own map[string]string) (string, error) {
	if isAbs(inner) {
		return filepath.Join(h.mountpoint, inner), nil
	}
	cur, ok := own[key]
	if !ok {
		name := key
		if name == "" {
			name = "unified"
		}
		return "", fmt.Errorf("resolve cgroup path %q: own cgroup for %s not found", inner, name)
	}
	if key == "" {
		// A process started by systemd sits in init.scope, which may not have
		// children next to processes; runc uses the parent for the same reason.
		cur = strings.TrimSuffix(cur, "/init.scope")
	}
	if h.root != "/" && h.root != "" {
		if cur == h.root {
			cur = "/"
		} else if strings.HasPrefix(cur, h.root+"/") {
			cur = strings.TrimPrefix(cur, h.root)
		}
	}
	return filepath.Join(h.mountpoint, cur, inner), nil
}
