package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// setV1 applies r on a v1 or hybrid host. Each group of settings is touched
// only when asked for, so a hierarchy that is not mounted matters only to the
// settings that need it.
func (m *manager) setV1(r *specs.LinuxResources) error {
	if len(r.Unified) > 0 {
		return ErrV1NoUnified
	}
	if mem := r.Memory; mem != nil && memoryRequested(mem) {
		dir, err := m.dirFor("memory")
		if err != nil {
			return err
		}
		if err := setMemoryV1(dir, mem); err != nil {
			return err
		}
	}
	if c := r.CPU; c != nil {
		if cpuRequested(c) {
			dir, err := m.dirFor("cpu")
			if err != nil {
				return err
			}
			if err := setCPUV1(dir, c); err != nil {
				return err
			}
		}
		if c.Cpus != "" || c.Mems != "" {
			dir, err := m.dirFor("cpuset")
			if err != nil {
				return err
			}
			if err := setCpuset(dir, c); err != nil {
				return err
			}
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		dir, err := m.dirFor("pids")
		if err != nil {
			return err
		}
		if err := writeFile(dir, "pids.max", pidsMax(*r.Pids.Limit)); err != nil {
			return err
		}
	}
	if b := r.BlockIO; b != nil && blkioRequested(b) {
		dir, err := m.dirFor("blkio")
		if err != nil {
			return err
		}
		if err := setBlkioV1(dir, b); err != nil {
			return err
		}
	}
	if len(r.HugepageLimits) > 0 {
		if err := m.setHugetlb(r.HugepageLimits); err != nil {
			return err
		}
	}
	if len(r.Devices) > 0 {
		dir, err := m.dirFor("devices")
		if err == nil {
			err = setDevicesV1(dir, r.Devices)
		}
		// Rootless containers cannot change the device list, and runc
		// ignores that rather than failing every rootless create.
		if err != nil && !m.rootless {
			return err
		}
	}
	if n := r.Network; n != nil {
		// net_cls and net_prio are optional: without their hierarchy the
		// settings are ignored, as runc does.
		if dir, ok := m.paths["net_cls"]; ok && n.ClassID != nil {
			if err := writeFile(dir, "net_cls.classid", strconv.FormatUint(uint64(*n.ClassID), 10)); err != nil {
				return err
			}
		}
		if dir, ok := m.paths["net_prio"]; ok {
			for _, p := range n.Priorities {
				if err := writeFile(dir, "net_prio.ifpriomap", fmt.Sprintf("%s %d", p.Name, p.Priority)); err != nil {
					return err
				}
			}
		}
	}
	if len(r.Rdma) > 0 {
		dir, err := m.dirFor("rdma")
		if err != nil {
			return err
		}
		if err := setRdma(dir, r.Rdma); err != nil {
			return err
		}
	}
	return nil
}

func memoryRequested(mem *specs.LinuxMemory) bool {
	return mem.Limit != nil || mem.Reservation != nil || mem.Swap != nil ||
		mem.Swappiness != nil || mem.DisableOOMKiller != nil
}

func cpuRequested(c *specs.LinuxCPU) bool {
	return c.Shares != nil || c.Quota != nil || c.Period != nil || c.Burst != nil ||
		c.RealtimeRuntime != nil || c.RealtimePeriod != nil || c.Idle != nil
}

func blkioRequested(b *specs.LinuxBlockIO) bool {
	return b.Weight != nil || b.LeafWeight != nil || len(b.WeightDevice) > 0 ||
		len(b.ThrottleReadBpsDevice) > 0 || len(b.ThrottleWriteBpsDevice) > 0 ||
		len(b.ThrottleReadIOPSDevice) > 0 || len(b.ThrottleWriteIOPSDevice) > 0
}

func val(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// pidsMax converts the spec's limit: 0 and negative both mean "no limit" in
// the spec, and the kernel spells that "max".
func pidsMax(limit int64) string {
	if limit <= 0 {
		return "max"
	}
	return strconv.FormatInt(limit, 10)
}

// setMemoryV1 follows runc: the spec's swap is the memory+swap total
// (memory.memsw.limit_in_bytes), and the kernel requires memsw >= limit at
// every moment, so the write order depends on whether the limit grows.
// Kernel and kernelTCP limits are ignored, as runc 1.1+ ignores both (kernel
// memory limits are obsolete since Linux 5.4; kernelTCP still works on v1).
func setMemoryV1(dir string, mem *specs.LinuxMemory) error {
	limit, swap := val(mem.Limit), val(mem.Swap)
	hasMemsw := fileExists(dir, "memory.memsw.limit_in_bytes")
	if limit == -1 && swap == 0 && hasMemsw {
		// "Unlimited memory" with no swap word means unlimited swap too,
		// or the old memsw value would cap the new limit.
		swap = -1
	}
	if mem.CheckBeforeUpdate != nil && *mem.CheckBeforeUpdate && limit > 0 {
		usage, err := readUint(dir, "memory.usage_in_bytes")
		if err != nil {
			return err
		}
		if uint64(limit) < usage {
			return fmt.Errorf("set memory limit: new limit %d is lower than current usage %d", limit, usage)
		}
	}
	setLimit := func() error {
		if limit == 0 {
			return nil
		}
		return writeFile(dir, "memory.limit_in_bytes", strconv.FormatInt(limit, 10))
	}
	setSwap := func() error {
		// Without swap accounting (swapaccount=0) there is no memsw file;
		// runc skips it too.
		if swap == 0 || !hasMemsw {
			return nil
		}
		return writeFile(dir, "memory.memsw.limit_in_bytes", strconv.FormatInt(swap, 10))
	}
	swapFirst := false
	if limit != 0 && swap != 0 && hasMemsw {
		cur, err := readUint(dir, "memory.limit_in_bytes")
		if err != nil {
			return err
		}
		swapFirst = swap == -1 || cur < uint64(swap)
	}
	steps := []func() error{setLimit, setSwap}
	if swapFirst {
		steps = []func() error{setSwap, setLimit}
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return fmt.Errorf("set memory limit: %w", err)
		}
	}
	if mem.Reservation != nil && *mem.Reservation != 0 {
		if err := writeFile(dir, "memory.soft_limit_in_bytes", strconv.FormatInt(*mem.Reservation, 10)); err != nil {
			return err
		}
	}
	if mem.Swappiness != nil {
		if *mem.Swappiness > 100 {
			return fmt.Errorf("invalid memory swappiness value: %d (valid range is 0-100)", *mem.Swappiness)
		}
		if err := writeFile(dir, "memory.swappiness", strconv.FormatUint(*mem.Swappiness, 10)); err != nil {
			return err
		}
	}
	if mem.DisableOOMKiller != nil {
		v := "0"
		if *mem.DisableOOMKiller {
			v = "1"
		}
		if err := writeFile(dir, "memory.oom_control", v); err != nil {
			return err
		}
	}
	return nil
}

func setCPURealtime(dir string, c *specs.LinuxCPU) error {
	// The period goes first: the runtime is checked against it.
	if c.RealtimePeriod != nil && *c.RealtimePeriod != 0 {
		if err := writeFile(dir, "cpu.rt_period_us", strconv.FormatUint(*c.RealtimePeriod, 10)); err != nil {
			return err
		}
	}
	if c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0 {
		if err := writeFile(dir, "cpu.rt_runtime_us", strconv.FormatInt(*c.RealtimeRuntime, 10)); err != nil {
			return err
		}
	}
	return nil
}

func setCPUV1(dir string, c *specs.LinuxCPU) error {
	if c.Shares != nil && *c.Shares != 0 {
		want := strconv.FormatUint(*c.Shares, 10)
		if err := writeFile(dir, "cpu.shares", want); err != nil {
			return err
		}
		// The kernel clamps out-of-range shares silently; say so instead.
		got, err := readFile(dir, "cpu.shares")
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("set cpu shares: wrote %s, kernel kept %s (out of range)", want, got)
		}
	}
	quota := val(c.Quota)
	var period string
	if c.Period != nil && *c.Period != 0 {
		period = strconv.FormatUint(*c.Period, 10)
		err := writeFile(dir, "cpu.cfs_period_us", period)
		switch {
		case err == nil:
			period = ""
		case errors.Is(err, unix.EINVAL) && quota != 0:
			// A shorter period can push old_quota/new_period over the
			// parent's limit; it fits once the new quota is in.
		default:
			return err
		}
	}
	if quota != 0 {
		if err := writeFile(dir, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); err != nil {
			return err
		}
		if period != "" {
			if err := writeFile(dir, "cpu.cfs_period_us", period); err != nil {
				return err
			}
		}
	}
	if c.Burst != nil {
		if err := writeFile(dir, "cpu.cfs_burst_us", strconv.FormatUint(*c.Burst, 10)); err != nil {
			return err
		}
	}
	if err := setCPURealtime(dir, c); err != nil {
		return err
	}
	if c.Idle != nil {
		if err := writeFile(dir, "cpu.idle", strconv.FormatInt(*c.Idle, 10)); err != nil {
			return err
		}
	}
	return nil
}

func setCpuset(dir string, c *specs.LinuxCPU) error {
	if c.Cpus != "" {
		if err := writeFile(dir, "cpuset.cpus", c.Cpus); err != nil {
			return err
		}
	}
	if c.Mems != "" {
		if err := writeFile(dir, "cpuset.mems", c.Mems); err != nil {
			return err
		}
	}
	return nil
}

// blkioWeightFile prefers BFQ's file: CFQ (blkio.weight) left the kernel in
// 5.0, and BFQ takes the same 10-1000 range.
func blkioWeightFile(dir string) string {
	if fileExists(dir, "blkio.bfq.weight") {
		return "blkio.bfq.weight"
	}
	return "blkio.weight"
}

func setBlkioV1(dir string, b *specs.LinuxBlockIO) error {
	weightFile := blkioWeightFile(dir)
	if b.Weight != nil && *b.Weight != 0 {
		if err := writeFile(dir, weightFile, strconv.FormatUint(uint64(*b.Weight), 10)); err != nil {
			return err
		}
	}
	if b.LeafWeight != nil && *b.LeafWeight != 0 {
		if err := writeFile(dir, "blkio.leaf_weight", strconv.FormatUint(uint64(*b.LeafWeight), 10)); err != nil {
			return err
		}
	}
	for _, wd := range b.WeightDevice {
		if wd.Weight != nil {
			f := "blkio.weight_device"
			if weightFile == "blkio.bfq.weight" {
				f = "blkio.bfq.weight_device"
			}
			if err := writeFile(dir, f, fmt.Sprintf("%d:%d %d", wd.Major, wd.Minor, *wd.Weight)); err != nil {
				return err
			}
		}
		if wd.LeafWeight != nil {
			if err := writeFile(dir, "blkio.leaf_weight_device", fmt.Sprintf("%d:%d %d", wd.Major, wd.Minor, *wd.LeafWeight)); err != nil {
				return err
			}
		}
	}
	throttles := []struct {
		file string
		devs []specs.LinuxThrottleDevice
	}{
		{"blkio.throttle.read_bps_device", b.ThrottleReadBpsDevice},
		{"blkio.throttle.write_bps_device", b.ThrottleWriteBpsDevice},
		{"blkio.throttle.read_iops_device", b.ThrottleReadIOPSDevice},
		{"blkio.throttle.write_iops_device", b.ThrottleWriteIOPSDevice},
	}
	for _, t := range throttles {
		for _, d := range t.devs {
			if err := writeFile(dir, t.file, fmt.Sprintf("%d:%d %d", d.Major, d.Minor, d.Rate)); err != nil {
				return err
			}
		}
	}
	return nil
}

// setHugetlb writes v1 files when the hugetlb hierarchy is mounted, else the
// v2 files in the unified directory (a hybrid host with hugetlb on cgroup2).
// The reservation limit is set as well when the kernel has it, since the
// spec's limit means the reservation limit where supported.
func (m *manager) setHugetlb(limits []specs.LinuxHugepageLimit) error {
	if dir, ok := m.paths["hugetlb"]; ok {
		for _, l := range limits {
			v := strconv.FormatUint(l.Limit, 10)
			if err := writeFile(dir, "hugetlb."+l.Pagesize+".limit_in_bytes", v); err != nil {
				return err
			}
			if err := writeOptional(dir, "hugetlb."+l.Pagesize+".rsvd.limit_in_bytes", v); err != nil {
				return err
			}
		}
		return nil
	}
	if dir, ok := m.paths[""]; ok {
		return setHugetlbV2(dir, limits)
	}
	return m.missing("hugetlb")
}

func (m *manager) missing(sub string) error {
	_, err := m.dirFor(sub)
	return err
}

func setHugetlbV2(dir string, limits []specs.LinuxHugepageLimit) error {
	for _, l := range limits {
		v := strconv.FormatUint(l.Limit, 10)
		if err := writeFile(dir, "hugetlb."+l.Pagesize+".max", v); err != nil {
			return err
		}
		if err := writeOptional(dir, "hugetlb."+l.Pagesize+".rsvd.max", v); err != nil {
			return err
		}
	}
	return nil
}

// writeOptional writes a file that older kernels lack.
func writeOptional(dir, file, data string) error {
	err := writeFile(dir, file, data)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// setRdma writes one "device hca_handle=N hca_object=M" line per device; the
// file has the same name and format on v1 and v2.
func setRdma(dir string, rdma map[string]specs.LinuxRdma) error {
	for dev, l := range rdma {
		var parts []string
		if l.HcaHandles != nil {
			parts = append(parts, fmt.Sprintf("hca_handle=%d", *l.HcaHandles))
		}
		if l.HcaObjects != nil {
			parts = append(parts, fmt.Sprintf("hca_object=%d", *l.HcaObjects))
		}
		if len(parts) == 0 {
			continue
		}
		if err := writeFile(dir, "rdma.max", dev+" "+strings.Join(parts, " ")); err != nil {
			return err
		}
	}
	return nil
}
