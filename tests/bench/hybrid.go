package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// On a hybrid host (cgroup v1 plus a cgroup2 mount at /sys/fs/cgroup/unified
// that holds a controller, here hugetlb), crun 1.8.1 refuses to run at all:
// "cgroups in hybrid mode not supported, drop all controllers from cgroupv2".
// Two ways around it, both putting all three runtimes in the same state:
//
//   - -hybrid=private (the default): the harness re-executes itself in a
//     private mount namespace (slave propagation) and detaches the cgroup2
//     mount there, so every runtime it starts sees a pure v1 host. Nothing
//     changes outside the harness; hugetlb is simply not managed.
//   - -hybrid=rebind: cgroupHelper binds those controllers to a v1
//     hierarchy mounted in a private namespace, as below. It changes a global
//     binding for the duration and fails while any cgroup2 child (another
//     user's container) holds the controller.
//
// cgroupHelper binds those controllers to a v1
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

const nsEnv = "_CUBO_BENCH_PRIVATE_NS"

// hybridControllers returns the controllers cgroup2 holds on a hybrid host.
func hybridControllers() []string {
	var st unix.Statfs_t
	if err := unix.Statfs(unified, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil
	}
	return readWords(filepath.Join(unified, "cgroup.controllers"))
}

// enterPrivateNS re-executes the harness under `unshare -m --propagation
// slave` and, once inside, detaches the cgroup2 mount. It returns true
// inside the namespace after the unmount.
func enterPrivateNS() (bool, error) {
	if os.Getenv(nsEnv) == "1" {
		if err := unix.Unmount(unified, unix.MNT_DETACH); err != nil {
			return false, fmt.Errorf("detach %s in the private mount namespace: %w", unified, err)
		}
		return true, nil
	}
	self, err := os.Executable()
	if err != nil {
		return false, err
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return false, fmt.Errorf("unshare (util-linux) not found: %w", err)
	}
	argv := append([]string{"unshare", "-m", "--propagation", "slave", "--", self}, os.Args[1:]...)
	return false, syscall.Exec(unshare, argv, append(os.Environ(), nsEnv+"=1"))
}
