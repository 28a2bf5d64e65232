package cgroups

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeV2 builds a fake unified hierarchy: a root with cgroup.controllers and
// an empty cgroup.subtree_control, and the container directory "ctr" holding
// the given files (the fake cannot grow files the way cgroupfs does, so every
// file a test expects to be written must exist). It returns a Manager made by
// New with a matching mountinfo, and the container directory.
func fakeV2(t *testing.T, files map[string]string, opts ...func(*Config)) (*manager, string) {
	t.Helper()
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma")
	mustWrite(t, filepath.Join(root, "cgroup.subtree_control"), "")
	dir := filepath.Join(root, "ctr")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		mustWrite(t, filepath.Join(dir, name), content)
	}
	cfg := Config{Path: "/ctr", Name: "ctr"}
	for _, o := range opts {
		o(&cfg)
	}
	mi := mountinfoLine(30, "/", root, "cgroup2", "rw,nsdelegate")
	m, err := New(cfg, WithMountinfo(strings.NewReader(mi)))
	if err != nil {
		t.Fatal(err)
	}
	if m.(*manager).mode != ModeV2 {
		t.Fatalf("fake hierarchy detected as %s", m.(*manager).mode)
	}
	if got := m.Paths()[""]; got != dir {
		t.Fatalf("unified path = %q, want %q", got, dir)
	}
	return m.(*manager), dir
}

func mustWrite(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkFiles compares file contents under dir; "" means untouched when the
// file started empty.
func checkFiles(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	for name, w := range want {
		if got := mustRead(t, filepath.Join(dir, name)); got != w {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
	}
}

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }
func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }
func boolp(v bool) *bool   { return &v }
func emptyFiles(names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = ""
	}
	return m
}

func TestV2ApplyEnablesControllersAndJoins(t *testing.T) {
	m, dir := fakeV2(t, emptyFiles("cgroup.procs"))
	if err := m.Apply(4242); err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(dir)
	checkFiles(t, root, map[string]string{"cgroup.subtree_control": "+cpuset +cpu +io +memory +hugetlb +pids +rdma"})
	checkFiles(t, dir, map[string]string{"cgroup.procs": "4242"})
	pids, err := m.GetAllPids()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pids, []int{4242}) {
		t.Errorf("GetAllPids = %v", pids)
	}
}

func TestV2ApplyCreatesNestedDirs(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "cgroup.controllers"), "memory pids")
	mustWrite(t, filepath.Join(root, "cgroup.subtree_control"), "pids")
	mi := mountinfoLine(30, "/", root, "cgroup2", "rw")
	m, err := New(Config{Path: "/a/b/c"}, WithMountinfo(strings.NewReader(mi)))
	if err != nil {
		t.Fatal(err)
	}
	// Without pid only the directories are made; a real kernel would fill
	// "a" and "a/b" with their own interface files.
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "a/b/c")); err != nil {
		t.Fatal(err)
	}
	// Only what was missing is asked for.
	checkFiles(t, root, map[string]string{"cgroup.subtree_control": "+memory"})
}

func TestV2Memory(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mem     specs.LinuxMemory
		want    map[string]string
		wantErr string
	}{
		{
			name: "limit, swap total, reservation",
			mem:  specs.LinuxMemory{Limit: i64(100 << 20), Swap: i64(300 << 20), Reservation: i64(50 << 20)},
			want: map[string]string{"memory.max": "104857600", "memory.swap.max": "209715200", "memory.low": "52428800"},
		},
		{
			name: "unlimited memory means unlimited swap",
			mem:  specs.LinuxMemory{Limit: i64(-1)},
			want: map[string]string{"memory.max": "max", "memory.swap.max": "max", "memory.low": ""},
		},
		{
			name: "swap equal to limit disables swap",
			mem:  specs.LinuxMemory{Limit: i64(1 << 20), Swap: i64(1 << 20)},
			want: map[string]string{"memory.max": "1048576", "memory.swap.max": "0"},
		},
		{
			name: "swappiness and oom killer have no v2 file",
			mem:  specs.LinuxMemory{Swappiness: u64(10), DisableOOMKiller: boolp(true)},
			want: map[string]string{"memory.max": "", "memory.swap.max": ""},
		},
		{name: "swap without limit", mem: specs.LinuxMemory{Swap: i64(1 << 20)}, wantErr: "without memory limit"},
		{name: "swap below limit", mem: specs.LinuxMemory{Limit: i64(2 << 20), Swap: i64(1 << 20)}, wantErr: "should be >= memory limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := fakeV2(t, emptyFiles("memory.max", "memory.swap.max", "memory.low"))
			err := m.Set(&specs.LinuxResources{Memory: &tc.mem})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Set error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkFiles(t, dir, tc.want)
		})
	}
}

func TestV2MemoryWithoutSwapFile(t *testing.T) {
	// No swap on the host: "max" is silently fine, a real limit is not.
	m, dir := fakeV2(t, emptyFiles("memory.max"))
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-1)}}); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, dir, map[string]string{"memory.max": "max"})
	err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 20), Swap: i64(2 << 20)}})
	if err == nil || !strings.Contains(err.Error(), "memory.swap.max") {
		t.Fatalf("Set error = %v, want one naming memory.swap.max", err)
	}
}

func TestV2MemoryCheckBeforeUpdate(t *testing.T) {
	files := emptyFiles("memory.max")
	files["memory.current"] = "2097152\n"
	m, _ := fakeV2(t, files)
	err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 20), CheckBeforeUpdate: boolp(true)}})
	if err == nil || !strings.Contains(err.Error(), "lower than current usage") {
		t.Fatalf("Set error = %v", err)
	}
}

func TestV2CPU(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cpu     specs.LinuxCPU
		want    map[string]string
		wantErr string
	}{
		{
			name: "shares quota period cpuset",
			cpu:  specs.LinuxCPU{Shares: u64(1024), Quota: i64(50000), Period: u64(100000), Cpus: "0-1", Mems: "0"},
			want: map[string]string{"cpu.weight": "100", "cpu.max": "50000 100000", "cpuset.cpus": "0-1", "cpuset.mems": "0"},
		},
		{
			name: "unlimited quota keeps period",
			cpu:  specs.LinuxCPU{Quota: i64(-1), Period: u64(20000)},
			want: map[string]string{"cpu.max": "max 20000", "cpu.weight": ""},
		},
		{
			name: "quota only",
			cpu:  specs.LinuxCPU{Quota: i64(30000)},
			want: map[string]string{"cpu.max": "30000"},
		},
		{
			name: "burst and idle",
			cpu:  specs.LinuxCPU{Quota: i64(30000), Burst: u64(1000), Idle: i64(1)},
			want: map[string]string{"cpu.max": "30000", "cpu.max.burst": "1000", "cpu.idle": "1"},
		},
		{
			name:    "realtime refused",
			cpu:     specs.LinuxCPU{RealtimeRuntime: i64(1000)},
			wantErr: "realtime",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := fakeV2(t, emptyFiles("cpu.weight", "cpu.max", "cpu.max.burst", "cpu.idle", "cpuset.cpus", "cpuset.mems"))
			err := m.Set(&specs.LinuxResources{CPU: &tc.cpu})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Set error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkFiles(t, dir, tc.want)
		})
	}
}

func TestCPUWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 0, 1: 1, 2: 1, 1024: 100, 262144: 10000, 1 << 20: 10000, 512: 59, 2048: 174} {
		if got := cpuWeight(shares); got != want {
			t.Errorf("cpuWeight(%d) = %d, want %d", shares, got, want)
		}
	}
	// Monotonic over the whole range, so relative weights keep their order.
	prev := uint64(0)
	for s := uint64(2); s <= 262144; s += 97 {
		w := cpuWeight(s)
		if w < prev || w < 1 || w > 10000 {
			t.Fatalf("cpuWeight(%d) = %d after %d", s, w, prev)
		}
		prev = w
	}
}

func TestIOWeight(t *testing.T) {
	for w, want := range map[uint64]uint64{0: 0, 10: 1, 1000: 10000, 500: 4950} {
		if got := ioWeight(w); got != want {
			t.Errorf("ioWeight(%d) = %d, want %d", w, got, want)
		}
	}
}

func TestV2Pids(t *testing.T) {
	for limit, want := range map[int64]string{-1: "max", 0: "max", 42: "42"} {
		m, dir := fakeV2(t, emptyFiles("pids.max"))
		if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(limit)}}); err != nil {
			t.Fatal(err)
		}
		checkFiles(t, dir, map[string]string{"pids.max": want})
	}
}

func TestV2IO(t *testing.T) {
	dev := func(maj, min int64) specs.LinuxBlockIODevice { return specs.LinuxBlockIODevice{Major: maj, Minor: min} }
	t.Run("io.weight converted", func(t *testing.T) {
		m, dir := fakeV2(t, emptyFiles("io.weight", "io.max"))
		err := m.Set(&specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
			Weight:                 u16(1000),
			ThrottleWriteBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev(8, 0), Rate: 1 << 20}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		checkFiles(t, dir, map[string]string{"io.weight": "10000", "io.max": "8:0 wbps=1048576"})
	})
	t.Run("bfq takes the raw weight", func(t *testing.T) {
		m, dir := fakeV2(t, emptyFiles("io.bfq.weight", "io.weight"))
		if err := m.Set(&specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: u16(300)}}); err != nil {
			t.Fatal(err)
		}
		checkFiles(t, dir, map[string]string{"io.bfq.weight": "300", "io.weight": ""})
	})
	for _, tc := range []struct {
		name string
		b    specs.LinuxBlockIO
		want string
	}{
		{"rbps", specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev(8, 16), Rate: 100}}}, "8:16 rbps=100"},
		{"riops", specs.LinuxBlockIO{ThrottleReadIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev(8, 16), Rate: 7}}}, "8:16 riops=7"},
		{"wiops unlimited", specs.LinuxBlockIO{ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev(253, 1)}}}, "253:1 wiops=max"},
		{"weight device", specs.LinuxBlockIO{WeightDevice: []specs.LinuxWeightDevice{{LinuxBlockIODevice: dev(8, 0), Weight: u16(10)}}}, "8:0 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := fakeV2(t, emptyFiles("io.weight", "io.max"))
			if err := m.Set(&specs.LinuxResources{BlockIO: &tc.b}); err != nil {
				t.Fatal(err)
			}
			f := "io.max"
			if len(tc.b.WeightDevice) > 0 {
				f = "io.weight"
			}
			checkFiles(t, dir, map[string]string{f: tc.want})
		})
	}
}

func TestV2Hugetlb(t *testing.T) {
	m, dir := fakeV2(t, emptyFiles("hugetlb.2MB.max", "hugetlb.2MB.rsvd.max", "hugetlb.1GB.max"))
	err := m.Set(&specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{
		{Pagesize: "2MB", Limit: 4 << 20}, {Pagesize: "1GB", Limit: 1 << 30},
	}})
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, dir, map[string]string{"hugetlb.2MB.max": "4194304", "hugetlb.2MB.rsvd.max": "4194304", "hugetlb.1GB.max": "1073741824"})
	err = m.Set(&specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "64KB", Limit: 1}}})
	if err == nil || !strings.Contains(err.Error(), "hugetlb.64KB.max") {
		t.Fatalf("Set of an unknown page size: error %v, want one naming the file", err)
	}
}

func TestV2Rdma(t *testing.T) {
	m, dir := fakeV2(t, emptyFiles("rdma.max"))
	err := m.Set(&specs.LinuxResources{Rdma: map[string]specs.LinuxRdma{"mlx4_0": {HcaHandles: u32(2), HcaObjects: u32(3)}}})
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, dir, map[string]string{"rdma.max": "mlx4_0 hca_handle=2 hca_object=3"})
}

func TestV2Unified(t *testing.T) {
	m, dir := fakeV2(t, emptyFiles("memory.high", "pids.max"))
	if err := m.Set(&specs.LinuxResources{Unified: map[string]string{"memory.high": "1000000", "pids.max": "9"}}); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, dir, map[string]string{"memory.high": "1000000", "pids.max": "9"})
	for key, want := range map[string]string{"../x": "file name", "a/b": "file name", "misc.max": `controller "misc" not available`} {
		err := m.Set(&specs.LinuxResources{Unified: map[string]string{key: "1"}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("unified %q: error %v, want %q", key, err, want)
		}
	}
}

func TestV2NetworkIgnored(t *testing.T) {
	m, _ := fakeV2(t, nil)
	if err := m.Set(&specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: u32(1)}}); err != nil {
		t.Fatalf("network settings on v2 should be ignored: %v", err)
	}
}

func TestV2MissingFileNamesIt(t *testing.T) {
	m, dir := fakeV2(t, nil)
	err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(5)}})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "pids.max")) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error = %v, want a not-exist error naming %s", err, filepath.Join(dir, "pids.max"))
	}
}

func TestV2Freeze(t *testing.T) {
	m, dir := fakeV2(t, map[string]string{"cgroup.freeze": "0\n", "cgroup.events": "populated 1\nfrozen 1\n"})
	if err := m.Freeze(true); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, dir, map[string]string{"cgroup.freeze": "1"})
	if f, err := m.Frozen(); err != nil || !f {
		t.Fatalf("Frozen = %v, %v; want true", f, err)
	}
	// The kernel would flip cgroup.events itself.
	mustWrite(t, filepath.Join(dir, "cgroup.events"), "populated 1\nfrozen 0\n")
	if err := m.Freeze(false); err != nil {
		t.Fatal(err)
	}
	if f, err := m.Frozen(); err != nil || f {
		t.Fatalf("Frozen = %v, %v; want false", f, err)
	}
}

func TestV2Stats(t *testing.T) {
	m, _ := fakeV2(t, map[string]string{
		"cpu.stat":             "usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 7\n",
		"memory.current":       "1000\n",
		"memory.max":           "max\n",
		"memory.peak":          "1500\n",
		"memory.events":        "low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\n",
		"memory.swap.current":  "24\n",
		"memory.swap.max":      "max\n",
		"memory.stat":          "anon 100\nfile 200\n",
		"pids.current":         "3\n",
		"pids.max":             "100\n",
		"io.stat":              "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
		"hugetlb.2MB.current":  "2097152\n",
		"hugetlb.2MB.max":      "max\n",
		"hugetlb.2MB.rsvd.max": "max\n",
		"hugetlb.2MB.events":   "max 4\n",
	})
	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := &Stats{
		CPU: CPU{
			Usage:      CPUUsage{Total: 5000000, User: 3000000, Kernel: 2000000},
			Throttling: Throttling{Periods: 10, ThrottledPeriods: 2, ThrottledTime: 7000},
		},
		Memory: Memory{
			Cache: 200,
			Usage: MemoryEntry{Usage: 1000, Max: 1500, Limit: maxUint, Failcnt: 3},
			Swap:  MemoryEntry{Usage: 1024, Limit: maxUint},
			Raw:   map[string]uint64{"anon": 100, "file": 200},
		},
		Pids: Pids{Current: 3, Limit: 100},
		Blkio: Blkio{
			IoServiceBytesRecursive: []BlkioEntry{{8, 0, "Read", 10}, {8, 0, "Write", 20}},
			IoServicedRecursive:     []BlkioEntry{{8, 0, "Read", 1}, {8, 0, "Write", 2}},
		},
		Hugetlb: map[string]Hugetlb{"2MB": {Usage: 2097152, Failcnt: 4}},
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Stats:\n got  %+v\n want %+v", st, want)
	}
	// The JSON keys are runc's `events` data keys.
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "blkio,cpu,hugetlb,memory,pids" {
		t.Errorf("JSON keys = %v", keys)
	}
	for _, frag := range []string{`"throttledPeriods":2`, `"ioServiceBytesRecursive"`, `"raw":{`, `"swap":{`} {
		if !strings.Contains(string(b), frag) {
			t.Errorf("JSON %s lacks %s", b, frag)
		}
	}
}

func TestV2Destroy(t *testing.T) {
	old := rmdir
	rmdir = func(p string) error { return os.RemoveAll(p) }
	t.Cleanup(func() { rmdir = old })
	m, dir := fakeV2(t, emptyFiles("cgroup.procs"))
	if err := os.MkdirAll(filepath.Join(dir, "child/grandchild"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still there: %v", dir, err)
	}
	// Idempotent: a second Destroy finds nothing and is fine.
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
}

func TestGetAllPidsRecursive(t *testing.T) {
	m, dir := fakeV2(t, map[string]string{"cgroup.procs": "1\n2\n"})
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(sub, "cgroup.procs"), "3\n")
	pids, err := m.GetAllPids()
	if err != nil {
		t.Fatal(err)
	}
	sort.Ints(pids)
	if !reflect.DeepEqual(pids, []int{1, 2, 3}) {
		t.Errorf("GetAllPids = %v", pids)
	}
}

func TestRootlessApplyIgnoresPermissionErrors(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("permission errors cannot be provoked as root")
	}
	m, dir := fakeV2(t, map[string]string{"cgroup.procs": ""}, func(c *Config) { c.Rootless = true })
	if err := os.Chmod(filepath.Join(dir, "cgroup.procs"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(1); err != nil {
		t.Fatalf("rootless Apply: %v", err)
	}
	if len(m.Paths()) != 0 {
		t.Errorf("Paths after a refused join: %v", m.Paths())
	}
}

// fakeHybrid builds a v1 memory hierarchy and a cgroup2 mount side by side,
// each with a "ctr" directory holding the given files.
func fakeHybrid(t *testing.T, memFiles, unifiedFiles map[string]string) (*manager, string, string) {
	t.Helper()
	root := t.TempDir()
	memDir := filepath.Join(root, "memory", "ctr")
	uniDir := filepath.Join(root, "unified", "ctr")
	for dir, files := range map[string]map[string]string{memDir: memFiles, uniDir: unifiedFiles} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			mustWrite(t, filepath.Join(dir, name), content)
		}
	}
	mi := mountinfoLine(35, "/", filepath.Join(root, "memory"), "cgroup", "rw,memory") +
		mountinfoLine(41, "/", filepath.Join(root, "unified"), "cgroup2", "rw")
	m, err := New(Config{Path: "/ctr"}, WithMountinfo(strings.NewReader(mi)))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*manager).mode; got != ModeHybrid {
		t.Fatalf("mode = %s", got)
	}
	return m.(*manager), memDir, uniDir
}

func TestHybridHugetlbGoesToUnified(t *testing.T) {
	m, memDir, uniDir := fakeHybrid(t,
		emptyFiles("cgroup.procs", "memory.limit_in_bytes"),
		emptyFiles("cgroup.procs", "hugetlb.2MB.max"))
	if err := m.Apply(77); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, memDir, map[string]string{"cgroup.procs": "77"})
	checkFiles(t, uniDir, map[string]string{"cgroup.procs": "77"})
	err := m.Set(&specs.LinuxResources{
		Memory:         &specs.LinuxMemory{Limit: i64(1 << 20), Swap: i64(2 << 20)},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 2 << 20}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// No memsw file (swap accounting off): the swap part is skipped.
	checkFiles(t, memDir, map[string]string{"memory.limit_in_bytes": "1048576"})
	checkFiles(t, uniDir, map[string]string{"hugetlb.2MB.max": "2097152"})
	// Limits for hierarchies that are not mounted fail clearly.
	err = m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(3)}})
	if err == nil || !strings.Contains(err.Error(), "pids cgroup hierarchy not mounted") {
		t.Fatalf("pids without a pids hierarchy: %v", err)
	}
	// net_cls/net_prio without their hierarchies are ignored.
	if err := m.Set(&specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: u32(0x100001)}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(&specs.LinuxResources{Unified: map[string]string{"hugetlb.2MB.max": "1"}}); !errors.Is(err, ErrV1NoUnified) {
		t.Fatalf("unified on hybrid: %v", err)
	}
}

func TestHybridUnwritableUnifiedIsDropped(t *testing.T) {
	// No cgroup.procs in the unified directory: the join fails, which on a
	// hybrid host only drops the unified path.
	m, _, _ := fakeHybrid(t, emptyFiles("cgroup.procs"), nil)
	if err := m.Apply(77); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Paths()[""]; ok {
		t.Errorf("unified path kept after a failed join: %v", m.Paths())
	}
	err := m.Set(&specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}}})
	if err == nil || !strings.Contains(err.Error(), "hugetlb") {
		t.Fatalf("hugetlb without anywhere to put it: %v", err)
	}
}

func TestV1FreezerStates(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ctr")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "freezer.state"), "THAWED\n")
	mustWrite(t, filepath.Join(dir, "freezer.self_freezing"), "0\n")
	m, err := Load(map[string]string{"freezer": dir})
	if err != nil {
		t.Fatal(err)
	}
	// A plain file keeps what is written, so the "kernel" settles at once.
	if err := m.Freeze(true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		state, self string
		want        bool
	}{
		{"FROZEN", "1", true},
		{"FROZEN", "0", false}, // frozen by an ancestor: not ours to resume
		{"THAWED", "0", false},
	} {
		mustWrite(t, filepath.Join(dir, "freezer.state"), tc.state+"\n")
		mustWrite(t, filepath.Join(dir, "freezer.self_freezing"), tc.self+"\n")
		if got, err := m.Frozen(); err != nil || got != tc.want {
			t.Errorf("state %s self %s: Frozen = %v, %v; want %v", tc.state, tc.self, got, err, tc.want)
		}
	}
	if _, err := (&manager{mode: ModeV1, paths: map[string]string{"memory": dir}}).Frozen(); err == nil {
		t.Error("Frozen without a freezer hierarchy: want an error")
	}
}
