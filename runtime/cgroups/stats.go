package cgroups

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Stats is one sample of a container's cgroup counters. The JSON form is the
// "data" object of runc's `events` (runc types.Stats), which go-runc and
// containerd decode.
type Stats struct {
	CPU     CPU                `json:"cpu"`
	Memory  Memory             `json:"memory"`
	Pids    Pids               `json:"pids"`
	Blkio   Blkio              `json:"blkio"`
	Hugetlb map[string]Hugetlb `json:"hugetlb"`
}

// Hugetlb is the usage of one huge page size, keyed by size ("2MB").
type Hugetlb struct {
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// BlkioEntry is one per-device counter.
type BlkioEntry struct {
	Major uint64 `json:"major,omitempty"`
	Minor uint64 `json:"minor,omitempty"`
	Op    string `json:"op,omitempty"`
	Value uint64 `json:"value,omitempty"`
}

// Blkio holds the block I/O counters; v2 fills only bytes and serviced.
type Blkio struct {
	IoServiceBytesRecursive []BlkioEntry `json:"ioServiceBytesRecursive,omitempty"`
	IoServicedRecursive     []BlkioEntry `json:"ioServicedRecursive,omitempty"`
	IoQueuedRecursive       []BlkioEntry `json:"ioQueueRecursive,omitempty"`
	IoServiceTimeRecursive  []BlkioEntry `json:"ioServiceTimeRecursive,omitempty"`
	IoWaitTimeRecursive     []BlkioEntry `json:"ioWaitTimeRecursive,omitempty"`
	IoMergedRecursive       []BlkioEntry `json:"ioMergedRecursive,omitempty"`
	IoTimeRecursive         []BlkioEntry `json:"ioTimeRecursive,omitempty"`
	SectorsRecursive        []BlkioEntry `json:"sectorsRecursive,omitempty"`
}

// Pids is the task count and limit (0 when unlimited).
type Pids struct {
	Current uint64 `json:"current,omitempty"`
	Limit   uint64 `json:"limit,omitempty"`
}

// Throttling counts CFS bandwidth periods; ThrottledTime is in nanoseconds.
type Throttling struct {
	Periods          uint64 `json:"periods,omitempty"`
	ThrottledPeriods uint64 `json:"throttledPeriods,omitempty"`
	ThrottledTime    uint64 `json:"throttledTime,omitempty"`
}

// CPUUsage is CPU time in nanoseconds.
type CPUUsage struct {
	Total        uint64   `json:"total,omitempty"`
	Percpu       []uint64 `json:"percpu,omitempty"`
	PercpuKernel []uint64 `json:"percpu_kernel,omitempty"`
	PercpuUser   []uint64 `json:"percpu_user,omitempty"`
	Kernel       uint64   `json:"kernel"`
	User         uint64   `json:"user"`
}

// CPU is CPU usage and throttling.
type CPU struct {
	Usage      CPUUsage   `json:"usage,omitempty"`
	Throttling Throttling `json:"throttling,omitempty"`
}

// MemoryEntry is one memory counter with its limit, in bytes. A limit of
// 2^64-1 means unlimited.
type MemoryEntry struct {
	Limit   uint64 `json:"limit"`
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// Memory is memory usage. Swap is memory+swap on both versions (v1's memsw
// meaning), as runc reports it. Raw is memory.stat.
type Memory struct {
	Cache     uint64            `json:"cache,omitempty"`
	Usage     MemoryEntry       `json:"usage,omitempty"`
	Swap      MemoryEntry       `json:"swap,omitempty"`
	Kernel    MemoryEntry       `json:"kernel,omitempty"`
	KernelTCP MemoryEntry       `json:"kernelTCP,omitempty"`
	Raw       map[string]uint64 `json:"raw,omitempty"`
}

func (m *manager) Stats() (*Stats, error) {
	st := &Stats{Hugetlb: map[string]Hugetlb{}}
	if m.mode == ModeV2 {
		return st, statsV2(m.paths[""], st)
	}
	steps := []struct {
		key string
		fn  func(string, *Stats) error
	}{
		{"cpuacct", cpuacctStats},
		{"cpu", cpuThrottleV1},
		{"memory", memoryStatsV1},
		{"pids", pidsStats},
		{"blkio", blkioStatsV1},
		{"hugetlb", hugetlbStatsV1},
	}
	for _, s := range steps {
		if dir, ok := m.paths[s.key]; ok {
			if err := s.fn(dir, st); err != nil {
				return nil, err
			}
		}
	}
	if _, ok := m.paths["hugetlb"]; !ok {
		if dir, ok := m.paths[""]; ok {
			if err := hugetlbStatsV2(dir, st); err != nil {
				return nil, err
			}
		}
	}
	return st, nil
}

// userHz is USER_HZ, the unit of cpuacct.stat; it is 100 on every Linux ABI
// Go supports.
const userHz = 100

func readUintList(dir, file string) ([]uint64, error) {
	s, err := readFile(dir, file)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, f := range strings.Fields(s) {
		v, err := parseUint(f, filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func cpuacctStats(dir string, st *Stats) error {
	var err error
	u := &st.CPU.Usage
	if u.Total, err = readUint(dir, "cpuacct.usage"); err != nil {
		return err
	}
	if u.Percpu, err = readUintList(dir, "cpuacct.usage_percpu"); err != nil {
		return err
	}
	if fileExists(dir, "cpuacct.usage_percpu_sys") {
		if u.PercpuKernel, err = readUintList(dir, "cpuacct.usage_percpu_sys"); err != nil {
			return err
		}
		if u.PercpuUser, err = readUintList(dir, "cpuacct.usage_percpu_user"); err != nil {
			return err
		}
	}
	kv, err := readKeyValues(dir, "cpuacct.stat")
	if err != nil {
		return err
	}
	const nsPerTick = 1e9 / userHz
	u.User = kv["user"] * nsPerTick
	u.Kernel = kv["system"] * nsPerTick
	return nil
}

func cpuThrottleV1(dir string, st *Stats) error {
	kv, err := readKeyValues(dir, "cpu.stat")
	if err != nil {
		return err
	}
	st.CPU.Throttling = Throttling{
		Periods:          kv["nr_periods"],
		ThrottledPeriods: kv["nr_throttled"],
		ThrottledTime:    kv["throttled_time"],
	}
	return nil
}

// memoryEntryV1 reads memory.<prefix>{usage_in_bytes,max_usage_in_bytes,
// failcnt,limit_in_bytes}; prefix is "", "memsw.", "kmem." or "kmem.tcp.".
// An absent group (no swap accounting, kernels without kmem) reads as zero.
func memoryEntryV1(dir, prefix string) (MemoryEntry, error) {
	var e MemoryEntry
	base := "memory." + prefix
	if !fileExists(dir, base+"usage_in_bytes") {
		return e, nil
	}
	fields := []struct {
		file string
		dst  *uint64
	}{
		{"usage_in_bytes", &e.Usage},
		{"max_usage_in_bytes", &e.Max},
		{"failcnt", &e.Failcnt},
		{"limit_in_bytes", &e.Limit},
	}
	for _, f := range fields {
		v, err := readUint(dir, base+f.file)
		if err != nil {
			return e, err
		}
		*f.dst = v
	}
	return e, nil
}

func memoryStatsV1(dir string, st *Stats) error {
	var err error
	mem := &st.Memory
	if mem.Usage, err = memoryEntryV1(dir, ""); err != nil {
		return err
	}
	if mem.Swap, err = memoryEntryV1(dir, "memsw."); err != nil {
		return err
	}
	if mem.Kernel, err = memoryEntryV1(dir, "kmem."); err != nil {
		return err
	}
	if mem.KernelTCP, err = memoryEntryV1(dir, "kmem.tcp."); err != nil {
		return err
	}
	if mem.Raw, err = readKeyValues(dir, "memory.stat"); err != nil {
		return err
	}
	mem.Cache = mem.Raw["cache"]
	return nil
}

// pidsStats reads pids.current and pids.max, which have the same names on
// v1 and v2.
func pidsStats(dir string, st *Stats) error {
	var err error
	if st.Pids.Current, err = readUint(dir, "pids.current"); err != nil {
		return err
	}
	limit, err := readUint(dir, "pids.max")
	if err != nil {
		return err
	}
	if limit != maxUint {
		st.Pids.Limit = limit
	}
	return nil
}

// parseBlkioV1 parses "MAJ:MIN Op Value" lines (and "MAJ:MIN Value" for
// files without an op), skipping the "Total" line.
func parseBlkioV1(dir, file string) ([]BlkioEntry, error) {
	s, err := readFile(dir, file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []BlkioEntry
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] == "Total" {
			continue
		}
		majS, minS, ok := strings.Cut(f[0], ":")
		if !ok {
			continue
		}
		maj, err1 := strconv.ParseUint(majS, 10, 64)
		minor, err2 := strconv.ParseUint(minS, 10, 64)
		v, err3 := strconv.ParseUint(f[len(f)-1], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		e := BlkioEntry{Major: maj, Minor: minor, Value: v}
		if len(f) == 3 {
			e.Op = f[1]
		}
		out = append(out, e)
	}
	return out, nil
}

func blkioStatsV1(dir string, st *Stats) error {
	// BFQ, then CFQ, then the throttle layer, which counts every device but
	// only bytes and requests: runc's order.
	prefix := ""
	switch {
	case fileExists(dir, "blkio.bfq.io_service_bytes_recursive"):
		prefix = "blkio.bfq."
	case fileExists(dir, "blkio.io_service_bytes_recursive"):
		prefix = "blkio."
	default:
		prefix = "blkio.throttle."
	}
	b := &st.Blkio
	files := []struct {
		name string
		dst  *[]BlkioEntry
	}{
		{"io_service_bytes_recursive", &b.IoServiceBytesRecursive},
		{"io_serviced_recursive", &b.IoServicedRecursive},
		{"io_queued_recursive", &b.IoQueuedRecursive},
		{"io_service_time_recursive", &b.IoServiceTimeRecursive},
		{"io_wait_time_recursive", &b.IoWaitTimeRecursive},
		{"io_merged_recursive", &b.IoMergedRecursive},
		{"time_recursive", &b.IoTimeRecursive},
		{"sectors_recursive", &b.SectorsRecursive},
	}
	for _, f := range files {
		e, err := parseBlkioV1(dir, prefix+f.name)
		if err != nil {
			return err
		}
		*f.dst = e
	}
	return nil
}

// hugePageSizes lists the sizes with a limit file in dir ("2MB", "1GB"),
// from file names of the form hugetlb.<size><suffix>.
func hugePageSizes(dir, suffix string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var sizes []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "hugetlb.")
		if !ok {
			continue
		}
		size, ok := strings.CutSuffix(rest, suffix)
		if !ok || strings.Contains(size, ".") {
			continue
		}
		sizes = append(sizes, size)
	}
	return sizes, nil
}

func hugetlbStatsV1(dir string, st *Stats) error {
	sizes, err := hugePageSizes(dir, ".limit_in_bytes")
	if err != nil {
		return err
	}
	for _, size := range sizes {
		var h Hugetlb
		if h.Usage, err = readUint(dir, "hugetlb."+size+".usage_in_bytes"); err != nil {
			return err
		}
		if h.Max, err = readUint(dir, "hugetlb."+size+".max_usage_in_bytes"); err != nil {
			return err
		}
		if h.Failcnt, err = readUint(dir, "hugetlb."+size+".failcnt"); err != nil {
			return err
		}
		st.Hugetlb[size] = h
	}
	return nil
}

func hugetlbStatsV2(dir string, st *Stats) error {
	sizes, err := hugePageSizes(dir, ".max")
	if err != nil {
		return err
	}
	for _, size := range sizes {
		var h Hugetlb
		if h.Usage, err = readUint(dir, "hugetlb."+size+".current"); err != nil {
			return err
		}
		ev, err := readKeyValues(dir, "hugetlb."+size+".events")
		if err != nil {
			return err
		}
		h.Failcnt = ev["max"]
		st.Hugetlb[size] = h
	}
	return nil
}

func statsV2(dir string, st *Stats) error {
	if fileExists(dir, "cpu.stat") {
		kv, err := readKeyValues(dir, "cpu.stat")
		if err != nil {
			return err
		}
		st.CPU.Usage.Total = kv["usage_usec"] * 1000
		st.CPU.Usage.User = kv["user_usec"] * 1000
		st.CPU.Usage.Kernel = kv["system_usec"] * 1000
		st.CPU.Throttling = Throttling{
			Periods:          kv["nr_periods"],
			ThrottledPeriods: kv["nr_throttled"],
			ThrottledTime:    kv["throttled_usec"] * 1000,
		}
	}
	if fileExists(dir, "memory.current") {
		if err := memoryStatsV2(dir, st); err != nil {
			return err
		}
	}
	if fileExists(dir, "pids.current") {
		if err := pidsStats(dir, st); err != nil {
			return err
		}
	}
	if fileExists(dir, "io.stat") {
		if err := ioStats(dir, st); err != nil {
			return err
		}
	}
	return hugetlbStatsV2(dir, st)
}

func memoryStatsV2(dir string, st *Stats) error {
	mem := &st.Memory
	var err error
	if mem.Usage.Usage, err = readUint(dir, "memory.current"); err != nil {
		return err
	}
	if mem.Usage.Limit, err = readUint(dir, "memory.max"); err != nil {
		return err
	}
	if fileExists(dir, "memory.peak") {
		if mem.Usage.Max, err = readUint(dir, "memory.peak"); err != nil {
			return err
		}
	}
	if fileExists(dir, "memory.events") {
		ev, err := readKeyValues(dir, "memory.events")
		if err != nil {
			return err
		}
		mem.Usage.Failcnt = ev["max"]
	}
	if fileExists(dir, "memory.swap.current") {
		swap, err := readUint(dir, "memory.swap.current")
		if err != nil {
			return err
		}
		swapMax, err := readUint(dir, "memory.swap.max")
		if err != nil {
			return err
		}
		// Report memory+swap, v1's memsw meaning, as runc does.
		mem.Swap.Usage = swap + mem.Usage.Usage
		mem.Swap.Limit = maxUint
		if swapMax != maxUint && mem.Usage.Limit != maxUint {
			mem.Swap.Limit = swapMax + mem.Usage.Limit
		}
	}
	if mem.Raw, err = readKeyValues(dir, "memory.stat"); err != nil {
		return err
	}
	mem.Cache = mem.Raw["file"]
	return nil
}

// ioStats parses io.stat lines: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...".
func ioStats(dir string, st *Stats) error {
	s, err := readFile(dir, "io.stat")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		majS, minS, ok := strings.Cut(f[0], ":")
		if !ok {
			continue
		}
		maj, err1 := strconv.ParseUint(majS, 10, 64)
		minor, err2 := strconv.ParseUint(minS, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		for _, kv := range f[1:] {
			k, vs, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			v, err := strconv.ParseUint(vs, 10, 64)
			if err != nil {
				continue
			}
			e := BlkioEntry{Major: maj, Minor: minor, Value: v}
			switch k {
			case "rbytes":
				e.Op = "Read"
				st.Blkio.IoServiceBytesRecursive = append(st.Blkio.IoServiceBytesRecursive, e)
			case "wbytes":
				e.Op = "Write"
				st.Blkio.IoServiceBytesRecursive = append(st.Blkio.IoServiceBytesRecursive, e)
			case "rios":
				e.Op = "Read"
				st.Blkio.IoServicedRecursive = append(st.Blkio.IoServicedRecursive, e)
			case "wios":
				e.Op = "Write"
				st.Blkio.IoServicedRecursive = append(st.Blkio.IoServicedRecursive, e)
			}
		}
	}
	return nil
}
