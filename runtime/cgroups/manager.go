package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// manager serves all three modes: v1 hierarchies are keyed by subsystem and
// the unified directory by "". In hybrid mode the v1 side does the work and
// the unified directory only takes what v1 lacks (hugetlb on this kind of
// host).
type manager struct {
	mode     string
	paths    map[string]string
	rootless bool
	res      *specs.LinuxResources
	// unifiedRoot is the cgroup2 mount point, known only to managers made by
	// New; Apply enables controllers from there down.
	unifiedRoot string
}

func (m *manager) Paths() map[string]string {
	out := make(map[string]string, len(m.paths))
	for k, v := range m.paths {
		out[k] = v
	}
	return out
}

// sortedKeys gives a stable order so errors and writes are reproducible.
func (m *manager) sortedKeys() []string {
	keys := make([]string, 0, len(m.paths))
	for k := range m.paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (m *manager) Apply(pid int) error {
	joined := map[string]bool{}
	for _, key := range m.sortedKeys() {
		dir := m.paths[key]
		err := m.applyOne(key, dir, pid, joined)
		if err == nil {
			continue
		}
		if key == "" && m.mode == ModeHybrid {
			// The hybrid unified hierarchy is often not writable (or
			// delegated elsewhere); runc stays out of it silently too.
			// Whatever was created is removed, since Paths no longer
			// names it and Destroy would miss it.
			_ = rmdir(dir)
			delete(m.paths, key)
			continue
		}
		if m.rootless && isPermission(err) {
			delete(m.paths, key)
			continue
		}
		return err
	}
	return nil
}

func (m *manager) applyOne(key, dir string, pid int, joined map[string]bool) error {
	if !joined[dir] {
		var err error
		switch key {
		case "":
			err = m.createUnified(dir)
		case "cpuset":
			err = ensureCpuset(dir)
		default:
			err = mkdir(dir)
		}
		if err != nil {
			return err
		}
	}
	if key == "cpu" && m.res != nil && m.res.CPU != nil {
		// A realtime task cannot join a group with no rt_runtime, so the
		// realtime budget goes in before the pid does.
		if err := setCPURealtime(dir, m.res.CPU); err != nil {
			return err
		}
	}
	if pid <= 0 || joined[dir] {
		return nil
	}
	joined[dir] = true
	return writeFile(dir, "cgroup.procs", strconv.Itoa(pid))
}

func mkdir(dir string) error {
	// The parent usually exists: one mkdir, where MkdirAll would stat the
	// cgroup and its parent first (in each of ~10 hierarchies).
	err := unix.Mkdir(dir, 0o755)
	if err == nil || errors.Is(err, unix.EEXIST) && isDir(dir) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// ensureCpuset creates dir and any missing parents, giving each one the
// cpus and mems of its parent: a v1 cpuset cgroup starts empty, and adding a
// task to an empty cpuset fails with ENOSPC.
func ensureCpuset(dir string) error {
	// The common case, a new cgroup under an initialised parent: one mkdir
	// and the parent's two values copied in, instead of reading the
	// missing files first.
	if err := unix.Mkdir(dir, 0o755); err == nil {
		parent := filepath.Dir(dir)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := readFile(parent, f)
			if err == nil {
				err = writeFile(dir, f, v)
			}
			if err != nil {
				_ = rmdir(dir)
				return err
			}
		}
		return nil
	}
	return ensureCpusetWalk(dir)
}

// ensureCpusetWalk is ensureCpuset for a cgroup that exists already or
// whose parents are missing.
func ensureCpusetWalk(dir string) error {
	cpus, cerr := readFile(dir, "cpuset.cpus")
	mems, merr := readFile(dir, "cpuset.mems")
	if cerr == nil && merr == nil && cpus != "" && mems != "" {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent == dir {
		return errors.New("initialise cpuset: no cpuset hierarchy found")
	}
	// Parents first: the hierarchy root always has both values, and the walk
	// fails at / (before creating anything) if dir is not in a cpuset mount.
	if err := ensureCpusetWalk(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create cgroup: %w", err)
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		cur, err := readFile(dir, f)
		if err != nil {
			return err
		}
		if cur != "" {
			continue
		}
		v, err := readFile(parent, f)
		if err != nil {
			return err
		}
		if err := writeFile(dir, f, v); err != nil {
			return err
		}
	}
	return nil
}

// createUnified creates a v2 directory and enables, in each ancestor below
// the mount point, every controller that ancestor has, as runc does; a
// failure to enable one is not fatal here but shows up when its limit is set.
func (m *manager) createUnified(dir string) error {
	if m.unifiedRoot != "" && strings.HasPrefix(dir, m.unifiedRoot+"/") {
		rel := strings.TrimPrefix(dir, m.unifiedRoot+"/")
		cur := m.unifiedRoot
		for _, elem := range strings.Split(rel, "/") {
			enableControllers(cur)
			cur = filepath.Join(cur, elem)
			if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("create cgroup: %w", err)
			}
		}
		return nil
	}
	return mkdir(dir)
}

func enableControllers(dir string) {
	avail, err := readFile(dir, "cgroup.controllers")
	if err != nil || avail == "" {
		return
	}
	enabled, _ := readFile(dir, "cgroup.subtree_control")
	have := map[string]bool{}
	for _, c := range strings.Fields(enabled) {
		have[c] = true
	}
	var want []string
	for _, c := range strings.Fields(avail) {
		if !have[c] {
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 {
		return
	}
	if writeFile(dir, "cgroup.subtree_control", strings.Join(want, " ")) == nil {
		return
	}
	// One refused controller fails the whole write; take what we can get.
	for _, c := range want {
		_ = writeFile(dir, "cgroup.subtree_control", c)
	}
}

func (m *manager) uniqueDirs() []string {
	seen := map[string]bool{}
	var dirs []string
	for _, k := range m.sortedKeys() {
		d := m.paths[k]
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}

func (m *manager) Destroy() error {
	var errs []error
	for _, d := range m.uniqueDirs() {
		if err := removeTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pidsDir picks the hierarchy to list tasks from: any one holds every task of
// the container, and the ones listed first are always mounted by Docker-era
// hosts.
func (m *manager) pidsDir() (string, error) {
	for _, k := range []string{"", "pids", "freezer", "memory", "cpu", "devices"} {
		if d, ok := m.paths[k]; ok {
			return d, nil
		}
	}
	for _, k := range m.sortedKeys() {
		return m.paths[k], nil
	}
	return "", errors.New("list cgroup pids: no cgroup paths")
}

func (m *manager) GetAllPids() ([]int, error) {
	dir, err := m.pidsDir()
	if err != nil {
		return nil, err
	}
	var pids []int
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		s, err := readFile(p, "cgroup.procs")
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(s) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("parse pid %q in %s: %w", f, p, err)
			}
			pids = append(pids, pid)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list cgroup pids: %w", err)
	}
	return pids, nil
}

// dirFor returns the directory for a v1 subsystem whose limits were asked for.
func (m *manager) dirFor(sub string) (string, error) {
	if d, ok := m.paths[sub]; ok {
		return d, nil
	}
	if m.rootless {
		return "", fmt.Errorf("cannot set %s limit: container could not join or create cgroup", sub)
	}
	return "", fmt.Errorf("cannot set %s limit: %s cgroup hierarchy not mounted", sub, sub)
}

func (m *manager) Set(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	var err error
	if m.mode == ModeV2 {
		err = m.setV2(m.paths[""], r)
	} else {
		err = m.setV1(r)
	}
	if err != nil {
		return err
	}
	m.res = r
	return nil
}
