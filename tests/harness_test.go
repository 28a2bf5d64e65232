package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// deadline bounds every wait on a real condition (a state change, a file
// appearing, a process going away). It is generous: it only matters when
// something is broken.
const deadline = 20 * time.Second

// cmdTimeout bounds a single runtime invocation.
const cmdTimeout = 2 * time.Minute

// harness runs the runtime under test with a private --root and keeps what is
// needed to check, at the end, that nothing was left behind.
type harness struct {
	root string // the runtime's --root
	work string // no mount may remain under it

	mu      sync.Mutex
	bundles []string // bundle dirs, for their cgroupsPath
	inits   []initProc
}

// initProc identifies a container init process across pid reuse.
type initProc struct {
	id      string
	pid     int
	start   string   // /proc/<pid>/stat starttime
	cgroups []string // its cgroup directories on the host
}

func newHarness(root, work string) *harness {
	return &harness{root: root, work: work}
}

// command returns the runtime command `<runtime> --root <root> args...`.
func (h *harness) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, runtimePath, append([]string{"--root", h.root}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// result is one finished runtime invocation.
type result struct {
	stdout, stderr string
	code           int // exit status; -1 if it did not run or was killed
	err            error
}

// run runs the runtime to completion with its output captured in memory.
// Use it for commands that do not leave a process holding stdio.
func (h *harness) run(args ...string) result {
	return h.runIn("", args...)
}

// runIn is run with the working directory dir ("" = ours).
func (h *harness) runIn(dir string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := h.command(ctx, args...)
	cmd.Dir = dir
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return result{stdout: out.String(), stderr: errb.String(), code: exitCode(err), err: err}
}

// runDetached runs a command (create, run -d) whose container inherits the
// runtime's stdio. Its stdout and stderr are files, so that nothing waits
// for the container to close them; the container keeps appending there.
func (h *harness) runDetached(dir, stdoutPath, stderrPath string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	open := func(p string) (*os.File, int64, error) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, st.Size(), nil
	}
	fo, oOff, err := open(stdoutPath)
	if err != nil {
		return result{code: -1, err: err}
	}
	defer fo.Close()
	fe, eOff, err := open(stderrPath)
	if err != nil {
		return result{code: -1, err: err}
	}
	defer fe.Close()
	cmd := h.command(ctx, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = fo, fe
	err = cmd.Run()
	r := result{code: exitCode(err), err: err}
	r.stdout = readFrom(stdoutPath, oOff)
	r.stderr = readFrom(stderrPath, eOff)
	return r
}

func readFrom(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < off {
		return ""
	}
	return string(b[off:])
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitCode()
	}
	return -1
}

// addBundle registers a bundle whose cgroup must be gone at the end.
func (h *harness) addBundle(dir string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bundles = append(h.bundles, dir)
}

// state runs `state id` and decodes it.
func (h *harness) state(id string) (map[string]any, error) {
	r := h.run("state", id)
	if r.err != nil {
		return nil, fmt.Errorf("state %s: %v: %s", id, r.err, r.stderr)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		return nil, fmt.Errorf("state %s: decode %q: %v", id, r.stdout, err)
	}
	return st, nil
}

// statePid returns the pid field of the state of id.
func (h *harness) statePid(id string) (int, error) {
	st, err := h.state(id)
	if err != nil {
		return 0, err
	}
	pid, ok := st["pid"].(float64)
	if !ok {
		return 0, fmt.Errorf("state %s: no numeric pid in %v", id, st)
	}
	return int(pid), nil
}

// track records the init of a container that was just created, so that the
// final check can make sure it is gone and its cgroups are removed.
func (h *harness) track(id string) error {
	pid, err := h.statePid(id)
	if err != nil {
		return err
	}
	if pid <= 0 {
		return nil
	}
	p := initProc{id: id, pid: pid, start: procStart(pid)}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil {
		p.cgroups = cgroupDirsOf(string(b))
	}
	h.mu.Lock()
	h.inits = append(h.inits, p)
	h.mu.Unlock()
	return nil
}

// waitState polls `state id` until its status is want.
func (h *harness) waitState(id, want string) error {
	var last string
	end := time.Now().Add(deadline)
	for {
		st, err := h.state(id)
		if err != nil {
			return err
		}
		last, _ = st["status"].(string)
		if last == want {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("container %s: status still %q after %v, want %q", id, last, deadline, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanup force-deletes every container left in the root and then checks
// for leaks. It returns one line per problem.
func (h *harness) cleanup() []string {
	var problems []string
	ents, _ := os.ReadDir(h.root)
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if r := h.run("delete", "--force", e.Name()); r.err != nil {
			problems = append(problems, fmt.Sprintf("cleanup: delete --force %s: %v: %s", e.Name(), r.err, r.stderr))
		}
	}
	problems = append(problems, h.leaks(true)...)
	if len(problems) > 0 {
		h.reclaim()
	}
	return problems
}

// reclaim removes by force what a broken runtime left behind, so that one
// failing test does not leave processes, cgroups or mounts on the machine:
// it kills the tracked inits, unmounts everything under the work dir,
// removes leftover cgroup directories and the --root.
func (h *harness) reclaim() {
	h.mu.Lock()
	inits := slices.Clone(h.inits)
	h.mu.Unlock()
	for _, p := range inits {
		if alive(p.pid, p.start) {
			unix.Kill(p.pid, unix.SIGKILL)
			waitGone(p.pid, p.start, deadline)
		}
	}
	mounts := mountsUnder(h.work)
	for i := len(mounts) - 1; i >= 0; i-- {
		unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
	for _, d := range h.cgroupDirs() {
		os.Remove(d) // rmdir: only an empty cgroup goes
	}
	os.RemoveAll(h.root)
	os.Mkdir(h.root, 0o700)
}

// leaks checks that no init process, cgroup directory, mount under the work
// dir, or (if all) state directory is left.
func (h *harness) leaks(all bool) []string {
	return h.checkLeaks(all, deadline)
}

// leaksNoWait is leaks(true) without waiting for processes to go away.
func (h *harness) leaksNoWait() []string {
	return h.checkLeaks(true, 0)
}

func (h *harness) checkLeaks(all bool, wait time.Duration) []string {
	var problems []string
	h.mu.Lock()
	inits := slices.Clone(h.inits)
	h.mu.Unlock()

	if all {
		if ents, _ := os.ReadDir(h.root); len(ents) > 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			problems = append(problems, fmt.Sprintf("leak: state left in --root %s: %v", h.root, names))
		}
	}
	for _, p := range inits {
		if err := waitGone(p.pid, p.start, wait); err != nil {
			problems = append(problems, fmt.Sprintf("leak: container %s: %v", p.id, err))
		}
	}
	for _, d := range h.cgroupDirs() {
		if _, err := os.Stat(d); err == nil {
			problems = append(problems, "leak: cgroup directory left: "+d)
		}
	}
	if h.work != "" {
		for _, m := range mountsUnder(h.work) {
			problems = append(problems, "leak: mount left: "+m)
		}
	}
	return problems
}

// cgroupDirs lists the cgroup directories the containers of this harness
// used: those seen for the tracked inits and those named by the bundles'
// cgroupsPath (cgroupfs driver).
func (h *harness) cgroupDirs() []string {
	h.mu.Lock()
	inits := slices.Clone(h.inits)
	bundles := slices.Clone(h.bundles)
	h.mu.Unlock()
	var dirs []string
	for _, p := range inits {
		dirs = append(dirs, p.cgroups...)
	}
	for _, b := range bundles {
		cfg, err := readJSON(filepath.Join(b, "config.json"))
		if err != nil {
			continue // deliberately broken or removed
		}
		if cp, _ := jsonGet(cfg, "linux.cgroupsPath").(string); cp != "" && !strings.Contains(cp, ":") {
			dirs = append(dirs, cgroupDirs(cp)...)
		}
	}
	slices.Sort(dirs)
	return slices.Compact(dirs)
}

// procStart returns the start time of pid from /proc/<pid>/stat, or "".
func procStart(pid int) string {
	f := procStat(pid)
	if len(f) < 20 {
		return ""
	}
	return f[19] // field 22 (starttime), counted after "(comm) "
}

// procStat returns the fields of /proc/<pid>/stat after the command name,
// starting with the state field.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// alive reports whether pid (with the given start time, if not empty) is
// still a live process; a zombie counts as gone.
func alive(pid int, start string) bool {
	f := procStat(pid)
	if len(f) < 20 {
		return false
	}
	if start != "" && f[19] != start {
		return false // reused
	}
	return f[0] != "Z" && f[0] != "X"
}

func waitGone(pid int, start string, wait time.Duration) error {
	end := time.Now().Add(wait)
	for alive(pid, start) {
		if time.Now().After(end) {
			return fmt.Errorf("process %d still alive after %v", pid, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// mountsUnder lists the mount points in our mount namespace at or under dir.
func mountsUnder(dir string) []string {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Mountpoint
	}
	return out
}

// cgroupMount is one mounted cgroup hierarchy.
type cgroupMount struct {
	dir string
	key string // the controllers field of /proc/<pid>/cgroup: "cpu", "name=systemd", "" for v2
}

var cgroupMountsOnce = sync.OnceValue(func() []cgroupMount {
	ms, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil
	}
	subsys := map[string]bool{}
	if cb, err := os.ReadFile("/proc/cgroups"); err == nil {
		for _, l := range strings.Split(string(cb), "\n") {
			if f := strings.Fields(l); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
				subsys[f[0]] = true
			}
		}
	}
	var out []cgroupMount
	for _, m := range ms {
		if m.FSType == "cgroup2" {
			out = append(out, cgroupMount{dir: m.Mountpoint})
			continue
		}
		var ctrl []string
		for _, o := range strings.Split(m.VFSOptions, ",") {
			if subsys[o] || strings.HasPrefix(o, "name=") {
				ctrl = append(ctrl, o)
			}
		}
		out = append(out, cgroupMount{dir: m.Mountpoint, key: strings.Join(ctrl, ",")})
	}
	return out
})

func cgroupMounts() []string {
	var dirs []string
	for _, m := range cgroupMountsOnce() {
		dirs = append(dirs, m.dir)
	}
	return dirs
}

// parseProcCgroup maps the controllers field to the path in a
// /proc/<pid>/cgroup file.
func parseProcCgroup(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 {
			m[parts[1]] = parts[2]
		}
	}
	return m
}

// cgroupDirsOf turns the content of a /proc/<pid>/cgroup file into host
// directories (skipping the root cgroup).
func cgroupDirsOf(procCgroup string) []string {
	paths := parseProcCgroup(procCgroup)
	var out []string
	for _, m := range cgroupMountsOnce() {
		p, ok := paths[m.key]
		// Our own cgroup or one of its ancestors is not the container's
		// (a runtime that failed to move the init leaves it in ours).
		if self := selfCgroups()[m.key]; !ok || p == "/" || p == self || strings.HasPrefix(self, strings.TrimSuffix(p, "/")+"/") {
			continue
		}
		out = append(out, filepath.Join(m.dir, p))
	}
	return out
}

// selfCgroups maps each hierarchy key to our own cgroup path.
var selfCgroups = sync.OnceValue(func() map[string]string {
	b, _ := os.ReadFile("/proc/self/cgroup")
	return parseProcCgroup(string(b))
})

// cgroupDirs returns the host directories a cgroupfs-driver runtime uses for
// linux.cgroupsPath: absolute paths are below each hierarchy's root,
// relative ones below the caller's own cgroup (runc's rule).
func cgroupDirs(cgroupsPath string) []string {
	var out []string
	for _, m := range cgroupMountsOnce() {
		p := cgroupsPath
		if !filepath.IsAbs(p) {
			p = filepath.Join(selfCgroups()[m.key], p)
		}
		if p = filepath.Clean("/" + p); p != "/" {
			out = append(out, filepath.Join(m.dir, p))
		}
	}
	return out
}
