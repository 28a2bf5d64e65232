package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// These tests create real cgroups on the host, so they need root and a v1 or
// hybrid host (the machine this project targets). Every test registers its
// cleanup before creating anything: thaw, kill its own child by pid, remove
// the directories, and fail if any is left.

var testSeq atomic.Int32

func requireRealV1(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: creating real cgroups needs root")
	}
	mode, err := Mode()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	if mode == ModeV2 {
		t.Skip("skipping: the real-cgroup tests cover v1 and hybrid hosts; v2 is covered by the fake-hierarchy tests")
	}
	return mode
}

func uniquePath() string {
	return fmt.Sprintf("/cubo-test-%d-%d", os.Getpid(), testSeq.Add(1))
}

// child is a process that blocks until told to go on, then execs sleep.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startChild(t *testing.T) *child {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "read x; exec sleep 1000")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &child{cmd: cmd, stdin: stdin}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// release lets the shell go on to exec sleep, and waits until it has (the
// exec is the proof that work was done inside the cgroup).
func (c *child) release(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c.pid()))
		if err == nil && strings.TrimSpace(string(comm)) == "sleep" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d never exec'd sleep (comm %q, %v)", c.pid(), comm, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// newReal makes a manager for a unique absolute path and registers the
// cleanup for it, its children and any parents listed in extraTops.
func newReal(t *testing.T, cfg Config, kids *[]*child) *manager {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = uniquePath()
	}
	top := "/" + strings.Split(strings.TrimPrefix(cfg.Path, "/"), "/")[0]
	mi, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := mi.(*manager)
	paths := m.Paths()
	unified := paths[""]
	var rootControl string
	if unified != "" && m.unifiedRoot != "" {
		rootControl, _ = readFile(m.unifiedRoot, "cgroup.subtree_control")
	}
	t.Cleanup(func() {
		if d, ok := paths["freezer"]; ok && fileExists(d, "freezer.state") {
			_ = writeFile(d, "freezer.state", "THAWED")
		}
		for _, c := range *kids {
			c.kill()
		}
		if err := m.Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		for _, p := range paths {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left behind after Destroy", p)
			}
			// Parents made for a nested path are the test's to remove.
			t0 := strings.TrimSuffix(p, strings.TrimPrefix(cfg.Path, top))
			if t0 != p {
				if err := removeTree(t0); err != nil {
					t.Errorf("remove %s: %v", t0, err)
				}
			}
		}
		if unified != "" && m.unifiedRoot != "" {
			restoreSubtreeControl(t, m.unifiedRoot, rootControl)
		}
	})
	return m
}

// restoreSubtreeControl turns off what Apply enabled at the unified root, so
// the test leaves the host as it found it.
func restoreSubtreeControl(t *testing.T, root, before string) {
	after, err := readFile(root, "cgroup.subtree_control")
	if err != nil {
		return
	}
	had := map[string]bool{}
	for _, c := range strings.Fields(before) {
		had[c] = true
	}
	for _, c := range strings.Fields(after) {
		if !had[c] {
			if err := writeFile(root, "cgroup.subtree_control", "-"+c); err != nil {
				t.Logf("restore %s/cgroup.subtree_control: %v", root, err)
			}
		}
	}
}

func procCgroup(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	own, err := parseProcCgroup(bufio.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	return own
}

func readBack(t *testing.T, dir, file string) string {
	t.Helper()
	s, err := readFile(dir, file)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// blockDevice returns "major:minor" of a disk on this host.
func blockDevice(t *testing.T) (int64, int64) {
	t.Helper()
	for _, name := range []string{"vda", "sda", "nvme0n1", "xvda", "loop0"} {
		b, err := os.ReadFile(filepath.Join("/sys/block", name, "dev"))
		if err != nil {
			continue
		}
		var maj, min int64
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &min); err == nil {
			return maj, min
		}
	}
	t.Skip("skipping: no block device found for the throttle test")
	return 0, 0
}

func TestRealLifecycle(t *testing.T) {
	mode := requireRealV1(t)
	var kids []*child
	m := newReal(t, Config{Name: "lifecycle"}, &kids)
	inner := "/" + filepath.Base(m.Paths()["memory"])
	c := startChild(t)
	kids = append(kids, c)

	if err := m.Apply(c.pid()); err != nil {
		t.Fatal(err)
	}
	paths := m.Paths()
	own := procCgroup(t, c.pid())
	for key := range paths {
		if key == "" {
			continue
		}
		if own[key] != inner {
			t.Errorf("/proc/%d/cgroup has %s:%s, want %s", c.pid(), key, own[key], inner)
		}
	}
	if _, ok := paths["name=systemd"]; !ok && mode == ModeHybrid {
		t.Logf("no name=systemd hierarchy on this host")
	}
	if u, ok := paths[""]; ok && own[""] != inner {
		t.Errorf("unified: /proc/%d/cgroup has 0::%s, want %s (dir %s)", c.pid(), own[""], inner, u)
	}

	maj, min := blockDevice(t)
	res := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{
			Limit: i64(64 << 20), Swap: i64(128 << 20), Reservation: i64(32 << 20),
			Swappiness: u64(10), DisableOOMKiller: boolp(true),
			Kernel: i64(1 << 20), // ignored, as runc does
		},
		CPU: &specs.LinuxCPU{
			Shares: u64(512), Quota: i64(20000), Period: u64(100000), Cpus: "0", Mems: "0",
		},
		Pids: &specs.LinuxPids{Limit: i64(50)},
		BlockIO: &specs.LinuxBlockIO{
			ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{
				LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: maj, Minor: min}, Rate: 1 << 20,
			}},
		},
		Devices: typicalDevices,
	}
	hugetlbOK := false
	if _, ok := paths["hugetlb"]; ok {
		hugetlbOK = true
	} else if u, ok := paths[""]; ok && fileExists(u, "hugetlb.2MB.max") {
		hugetlbOK = true
	}
	if hugetlbOK {
		res.HugepageLimits = []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}}
	}
	if err := m.Set(res); err != nil {
		t.Fatal(err)
	}
	c.release(t)

	mem, cpu, cpuset := paths["memory"], paths["cpu"], paths["cpuset"]
	for _, chk := range []struct{ dir, file, want string }{
		{mem, "memory.limit_in_bytes", "67108864"},
		{mem, "memory.soft_limit_in_bytes", "33554432"},
		{mem, "memory.swappiness", "10"},
		{cpu, "cpu.shares", "512"},
		{cpu, "cpu.cfs_quota_us", "20000"},
		{cpu, "cpu.cfs_period_us", "100000"},
		{cpuset, "cpuset.cpus", "0"},
		{cpuset, "cpuset.mems", "0"},
		{paths["pids"], "pids.max", "50"},
		{paths["blkio"], "blkio.throttle.read_bps_device", fmt.Sprintf("%d:%d 1048576", maj, min)},
		{paths["devices"], "devices.list", "c 1:3 rwm\nc 1:5 rwm\nc 5:0 rwm\nc 136:* rwm\nc 10:200 rw\nc *:* m\nb *:* m"},
	} {
		if got := readBack(t, chk.dir, chk.file); got != chk.want {
			t.Errorf("%s/%s = %q, want %q", chk.dir, chk.file, got, chk.want)
		}
	}
	if fileExists(mem, "memory.memsw.limit_in_bytes") {
		if got := readBack(t, mem, "memory.memsw.limit_in_bytes"); got != "134217728" {
			t.Errorf("memsw = %s", got)
		}
	}
	if oom := readBack(t, mem, "memory.oom_control"); !strings.Contains(oom, "oom_kill_disable 1") {
		t.Errorf("memory.oom_control = %q", oom)
	}
	if hugetlbOK {
		d, f := paths["hugetlb"], "hugetlb.2MB.limit_in_bytes"
		if d == "" {
			d, f = paths[""], "hugetlb.2MB.max"
		}
		if got := readBack(t, d, f); got != "4194304" {
			t.Errorf("%s/%s = %s", d, f, got)
		}
	} else {
		t.Log("hugetlb not available in the container's cgroups; limit not tested")
	}

	// update: pids and cpu only, as `cubo-runc update` would.
	if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}, CPU: &specs.LinuxCPU{Quota: i64(-1)}}); err != nil {
		t.Fatal(err)
	}
	if got := readBack(t, paths["pids"], "pids.max"); got != "max" {
		t.Errorf("pids.max after update = %s", got)
	}
	if got := readBack(t, cpu, "cpu.cfs_quota_us"); got != "-1" {
		t.Errorf("cpu.cfs_quota_us after update = %s", got)
	}

	// Freeze, check the kernel's view, thaw.
	if err := m.Freeze(true); err != nil {
		t.Fatal(err)
	}
	if got := readBack(t, paths["freezer"], "freezer.state"); got != "FROZEN" {
		t.Errorf("freezer.state = %s", got)
	}
	if f, err := m.Frozen(); err != nil || !f {
		t.Errorf("Frozen = %v, %v", f, err)
	}
	if err := m.Freeze(false); err != nil {
		t.Fatal(err)
	}
	if f, err := m.Frozen(); err != nil || f {
		t.Errorf("Frozen after thaw = %v, %v", f, err)
	}

	pids, err := m.GetAllPids()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pids, c.pid()) {
		t.Errorf("GetAllPids = %v, want it to hold %d", pids, c.pid())
	}

	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.CPU.Usage.Total == 0 || len(st.CPU.Usage.Percpu) == 0 {
		t.Errorf("cpu usage is zero: %+v", st.CPU.Usage)
	}
	if st.Memory.Usage.Usage == 0 || st.Memory.Usage.Limit != 64<<20 || len(st.Memory.Raw) == 0 {
		t.Errorf("memory stats: usage %+v, %d raw keys", st.Memory.Usage, len(st.Memory.Raw))
	}
	if st.Pids.Current != 1 {
		t.Errorf("pids.current = %d, want 1", st.Pids.Current)
	}

	// A Manager rebuilt from the persisted paths sees the same cgroup.
	lm, err := Load(paths)
	if err != nil {
		t.Fatal(err)
	}
	if pids2, err := lm.GetAllPids(); err != nil || !slices.Equal(pids2, pids) {
		t.Errorf("loaded GetAllPids = %v, %v; want %v", pids2, err, pids)
	}

	c.kill()
	if err := lm.Destroy(); err != nil {
		t.Fatal(err)
	}
	for k, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%q: %s still exists", k, p)
		}
	}
}

func TestRealMemorySwapOrder(t *testing.T) {
	requireRealV1(t)
	var kids []*child
	m := newReal(t, Config{Name: "swap"}, &kids)
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	mem := m.Paths()["memory"]
	if !fileExists(mem, "memory.memsw.limit_in_bytes") {
		t.Skip("skipping: no swap accounting (memory.memsw.*) on this kernel")
	}
	// Growing needs memsw first, shrinking needs the limit first; the
	// wrong order gets EINVAL from the kernel.
	for _, step := range []struct{ limit, swap int64 }{
		{100 << 20, 200 << 20},
		{300 << 20, 400 << 20},
		{50 << 20, 60 << 20},
		{-1, 0},
	} {
		err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(step.limit), Swap: i64(step.swap)}})
		if err != nil {
			t.Fatalf("limit %d swap %d: %v", step.limit, step.swap, err)
		}
		wantLimit, wantSwap := fmt.Sprint(step.limit), fmt.Sprint(step.swap)
		if step.limit == -1 {
			wantLimit, wantSwap = "9223372036854771712", "9223372036854771712"
		}
		if got := readBack(t, mem, "memory.limit_in_bytes"); got != wantLimit {
			t.Errorf("limit = %s, want %s", got, wantLimit)
		}
		if got := readBack(t, mem, "memory.memsw.limit_in_bytes"); got != wantSwap {
			t.Errorf("memsw = %s, want %s", got, wantSwap)
		}
	}
}

func TestRealCpusetNested(t *testing.T) {
	requireRealV1(t)
	var kids []*child
	m := newReal(t, Config{Path: uniquePath() + "/mid/ctr"}, &kids)
	c := startChild(t)
	kids = append(kids, c)
	// Without copying cpus/mems down through "mid" this would be ENOSPC.
	if err := m.Apply(c.pid()); err != nil {
		t.Fatal(err)
	}
	dir := m.Paths()["cpuset"]
	parent := filepath.Dir(filepath.Dir(filepath.Dir(dir)))
	for _, d := range []string{dir, filepath.Dir(dir)} {
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if got, want := readBack(t, d, f), readBack(t, parent, f); got != want {
				t.Errorf("%s/%s = %q, want the root's %q", d, f, got, want)
			}
		}
	}
}

func TestRealUnifiedRefusedOnV1(t *testing.T) {
	requireRealV1(t)
	var kids []*child
	m := newReal(t, Config{Name: "unified"}, &kids)
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	err := m.Set(&specs.LinuxResources{Unified: map[string]string{"memory.high": "1"}})
	if !errors.Is(err, ErrV1NoUnified) {
		t.Fatalf("Set unified on v1: %v", err)
	}
	err = m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: u64(101)}})
	if err == nil || !strings.Contains(err.Error(), "swappiness") {
		t.Fatalf("Set swappiness 101: %v", err)
	}
}

func TestRealDestroyMissingIsFine(t *testing.T) {
	requireRealV1(t)
	m, err := New(Config{Path: uniquePath()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Destroy(); err != nil {
		t.Fatalf("Destroy of never-created cgroups: %v", err)
	}
}

// TestRealDeviceProgram loads and attaches the v2 device program on the
// hybrid host's cgroup2 mount, where the kernel enforces it even though the
// devices controller lives on v1.
func TestRealDeviceProgram(t *testing.T) {
	requireRealV1(t)
	var kids []*child
	m := newReal(t, Config{Name: "bpf"}, &kids)
	dir, ok := m.Paths()[""]
	if !ok {
		t.Skip("skipping: no cgroup2 mount on this host")
	}
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Paths()[""]; !ok {
		t.Skip("skipping: the unified hierarchy is not writable here")
	}
	run := func() string {
		t.Helper()
		fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		cmd := exec.Command("/bin/sh", "-c",
			"cat /dev/null && echo null-ok; if head -c1 /dev/zero >/dev/null 2>&1; then echo zero-ok; else echo zero-denied; fi")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("probe: %v: %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	onlyNull := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, dev(true, "c", 1, 3, "rwm")}
	if err := setDevicesV2(dir, onlyNull); err != nil {
		t.Fatal(err)
	}
	if got := run(); got != "null-ok\nzero-denied" {
		t.Errorf("with only /dev/null allowed: %q", got)
	}
	// Replacing leaves exactly one program, and the new rules rule.
	if err := setDevicesV2(dir, []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}); err != nil {
		t.Fatal(err)
	}
	if got := run(); got != "null-ok\nzero-ok" {
		t.Errorf("with everything allowed: %q", got)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, flags, err := queryDevicePrograms(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 {
		t.Errorf("%d device programs attached after a replace (flags %#x), want 1", len(ids), flags)
	}
}

// TestRealRemoveTreeWithChildren: removeTree tries the rmdir first; a cgroup
// with child cgroups (EBUSY from cgroupfs) must still go, children first.
func TestRealRemoveTreeWithChildren(t *testing.T) {
	requireRealV1(t)
	top := filepath.Join("/sys/fs/cgroup/pids", uniquePath())
	t.Cleanup(func() {
		for _, d := range []string{top + "/a/b", top + "/a", top + "/c", top} {
			_ = os.Remove(d)
		}
	})
	for _, d := range []string{top, top + "/a", top + "/a/b", top + "/c"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeTree(top); err != nil {
		t.Fatalf("removeTree: %v", err)
	}
	if _, err := os.Stat(top); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s left behind: %v", top, err)
	}
	if err := removeTree(top); err != nil {
		t.Fatalf("removeTree of a missing cgroup: %v", err)
	}
}
