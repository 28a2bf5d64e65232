package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// On a hybrid host (cgroup v1 plus a cgroup2 mount at /sys/fs/cgroup/unified
// that holds a controller, here hugetlb), crun 1.8.1 refuses to run at all:
// "cgroups in hybrid mode not supported, drop all controllers from cgroupv2".
// While the benchmark runs, cgroupHelper binds those controllers to a v1
// hierarchy mounted only in a private mount namespace (the binding is
// global, the mount is invisible to the host), so cgroup2 holds none and all
// three runtimes run in the same state. Killing the helper unmounts it and
// the controllers return to cgroup2; their subtree_control bits are restored.
type cgroupHelper struct {
	pid         int
	dir         string
	controllers []string
	enabled     []string // controllers that were on in the root's subtree_control
	exited      bool
}

const unified = "/sys/fs/cgroup/unified"

func readWords(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// startCgroupHelper returns nil, nil when cgroup2 holds no controller.
func startCgroupHelper(workDir string) (*cgroupHelper, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(unified, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, nil
	}
	ctrls := readWords(filepath.Join(unified, "cgroup.controllers"))
	if len(ctrls) == 0 {
		return nil, nil
	}
	h := &cgroupHelper{dir: filepath.Join(workDir, "v1-"+strings.Join(ctrls, "-")), controllers: ctrls}
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		return nil, err
	}
	// A controller enabled in the root's subtree_control, or still held by a
	// (possibly dying) child cgroup, cannot be rebound: disable it and wait
	// for dying cgroups to go away.
	for _, c := range readWords(filepath.Join(unified, "cgroup.subtree_control")) {
		if err := os.WriteFile(filepath.Join(unified, "cgroup.subtree_control"), []byte("-"+c), 0); err != nil {
			return nil, fmt.Errorf("disable %s in %s: %w", c, unified, err)
		}
		h.enabled = append(h.enabled, c)
	}
	script := fmt.Sprintf("mount -t cgroup -o %s cubo-bench-v1 %s && echo ok && exec sleep 86400",
		strings.Join(ctrls, ","), h.dir)
	deadline := time.Now().Add(90 * time.Second)
	var lastErr string
	for {
		pr, pw, err := os.Pipe()
		if err != nil {
			h.restore()
			return nil, err
		}
		pid, err := syscall.ForkExec("/usr/bin/unshare",
			[]string{"unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c", script},
			&syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{devNullFd(), pw.Fd(), pw.Fd()}})
		pw.Close()
		if err != nil {
			pr.Close()
			h.restore()
			return nil, fmt.Errorf("start cgroup helper: %w", err)
		}
		buf := make([]byte, 512)
		n, _ := pr.Read(buf)
		pr.Close()
		if strings.HasPrefix(string(buf[:n]), "ok") {
			h.pid = pid
			reapedHook = func(p int) {
				if p == h.pid {
					h.exited = true
				}
			}
			return h, nil
		}
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, 0, nil)
		lastErr = strings.TrimSpace(string(buf[:n]))
		if time.Now().After(deadline) {
			h.restore()
			return nil, fmt.Errorf("bind %v to a private v1 hierarchy (dying cgroup2 children: %v): %s",
				ctrls, dying(), lastErr)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func dying() string {
	b, _ := os.ReadFile(filepath.Join(unified, "cgroup.stat"))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "nr_dying_descendants "); ok {
			return v
		}
	}
	return "?"
}

func devNullFd() uintptr {
	if devNull == nil {
		devNull, _ = os.OpenFile(os.DevNull, os.O_RDWR, 0)
	}
	return devNull.Fd()
}

// stop kills the helper by its PID, waits until the controllers are back
// on cgroup2, and re-enables those that were enabled.
func (h *cgroupHelper) stop() {
	if h == nil {
		return
	}
	if h.pid > 0 && !h.exited {
		unix.Kill(h.pid, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(h.pid, &ws, 0, nil)
		h.exited = true
	}
	h.restore()
	os.Remove(h.dir)
}

func (h *cgroupHelper) restore() {
	if len(h.enabled) == 0 {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range h.enabled {
		for {
			err := os.WriteFile(filepath.Join(unified, "cgroup.subtree_control"), []byte("+"+c), 0)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "bench: could not re-enable %s in %s/cgroup.subtree_control: %v\n", c, unified, err)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	h.enabled = nil
}
