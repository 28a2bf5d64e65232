package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// setV2 applies r to a unified directory with runc's v1-to-v2 conversions.
// Swappiness and disableOOMKiller have no v2 file and are ignored, as runc
// does; realtime CPU settings have none either and are refused.
func (m *manager) setV2(dir string, r *specs.LinuxResources) error {
	if dir == "" {
		return errors.New("set cgroup limits: no unified cgroup path")
	}
	if mem := r.Memory; mem != nil && memoryRequested(mem) {
		if err := setMemoryV2(dir, mem); err != nil {
			return err
		}
	}
	if c := r.CPU; c != nil {
		if err := setCPUV2(dir, c); err != nil {
			return err
		}
		if err := setCpuset(dir, c); err != nil {
			return err
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		if err := writeFile(dir, "pids.max", pidsMax(*r.Pids.Limit)); err != nil {
			return err
		}
	}
	if b := r.BlockIO; b != nil && blkioRequested(b) {
		if err := setIO(dir, b); err != nil {
			return err
		}
	}
	if len(r.HugepageLimits) > 0 {
		if err := setHugetlbV2(dir, r.HugepageLimits); err != nil {
			return err
		}
	}
	if len(r.Devices) > 0 {
		if err := setDevicesV2(dir, r.Devices); err != nil && !m.rootless {
			return err
		}
	}
	if len(r.Rdma) > 0 {
		if err := setRdma(dir, r.Rdma); err != nil {
			return err
		}
	}
	// net_cls and net_prio do not exist on v2 (classification moved to
	// eBPF); runc ignores the settings there too.
	return setUnified(dir, r.Unified)
}

// numToStr maps a v1-style number to a v2 value: 0 is "unset" (nothing to
// write) and -1 is "max".
func numToStr(v int64) string {
	switch v {
	case 0:
		return ""
	case -1:
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// swapV2 converts the spec's memory+swap total to memory.swap.max, which
// counts swap alone (runc's ConvertMemorySwapToCgroupV2Value).
func swapV2(swap, memory int64) (int64, error) {
	if memory == -1 && swap == 0 {
		// "Unlimited memory" means unlimited swap too, as on v1.
		return -1, nil
	}
	if swap == -1 || swap == 0 {
		return swap, nil
	}
	if memory == 0 || memory == -1 {
		return 0, errors.New("unable to set swap limit without memory limit")
	}
	if memory < 0 {
		return 0, fmt.Errorf("invalid memory value: %d", memory)
	}
	if swap < memory {
		return 0, errors.New("memory+swap limit should be >= memory limit")
	}
	return swap - memory, nil
}

func setMemoryV2(dir string, mem *specs.LinuxMemory) error {
	limit := val(mem.Limit)
	swap, err := swapV2(val(mem.Swap), limit)
	if err != nil {
		return fmt.Errorf("set memory limit: %w", err)
	}
	swapStr := numToStr(swap)
	if swapStr == "" && swap == 0 && val(mem.Swap) > 0 {
		// memory == memory+swap: no swap at all.
		swapStr = "0"
	}
	if mem.CheckBeforeUpdate != nil && *mem.CheckBeforeUpdate && limit > 0 {
		usage, err := readUint(dir, "memory.current")
		if err != nil {
			return err
		}
		if uint64(limit) < usage {
			return fmt.Errorf("set memory limit: new limit %d is lower than current usage %d", limit, usage)
		}
	}
	if swapStr != "" {
		// Never an empty write: memory.swap.max reads "" as 0.
		err := writeFile(dir, "memory.swap.max", swapStr)
		// Without swap (no memory.swap.max) "max" and "0" are what the
		// kernel does anyway.
		if err != nil && !(errors.Is(err, fs.ErrNotExist) && (swapStr == "max" || swapStr == "0")) {
			return err
		}
	}
	if s := numToStr(limit); s != "" {
		if err := writeFile(dir, "memory.max", s); err != nil {
			return err
		}
	}
	if mem.Reservation != nil {
		if s := numToStr(*mem.Reservation); s != "" {
			if err := writeFile(dir, "memory.low", s); err != nil {
				return err
			}
		}
	}
	return nil
}

// cpuWeight converts v1 cpu.shares (2..262144, default 1024) to v2 cpu.weight
// (1..10000, default 100) as runc 1.3.2 and later do (runc#4785): a quadratic
// in log2(shares) through 2->1, 1024->100 and 262144->10000. The linear
// formula it replaced put the default 1024 at 39.
func cpuWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares <= 2 {
		return 1
	}
	if shares >= 262144 {
		return 10000
	}
	l := math.Log2(float64(shares))
	exp := (l*l+125*l)/612.0 - 7.0/34.0
	return uint64(math.Ceil(math.Pow(10, exp)))
}

func setCPUV2(dir string, c *specs.LinuxCPU) error {
	if c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0 || c.RealtimePeriod != nil && *c.RealtimePeriod != 0 {
		return errors.New("set cpu limits: realtime scheduling is not supported on cgroup v2")
	}
	if c.Idle != nil {
		if err := writeFile(dir, "cpu.idle", strconv.FormatInt(*c.Idle, 10)); err != nil {
			return err
		}
	}
	if c.Shares != nil {
		if w := cpuWeight(*c.Shares); w != 0 {
			if err := writeFile(dir, "cpu.weight", strconv.FormatUint(w, 10)); err != nil {
				return err
			}
		}
	}
	if s := cpuMax(val(c.Quota), c.Period); s != "" {
		if c.Burst != nil {
			// The kernel wants burst <= quota at every moment: write the
			// burst first, and again after cpu.max if the new quota had to
			// go in before it fitted (runc's order).
			if err := writeFile(dir, "cpu.max.burst", strconv.FormatUint(*c.Burst, 10)); err != nil {
				if err := writeFile(dir, "cpu.max", s); err != nil {
					return err
				}
				return writeFile(dir, "cpu.max.burst", strconv.FormatUint(*c.Burst, 10))
			}
		}
		return writeFile(dir, "cpu.max", s)
	}
	if c.Burst != nil {
		return writeFile(dir, "cpu.max.burst", strconv.FormatUint(*c.Burst, 10))
	}
	return nil
}

// cpuMax renders cpu.max ("$QUOTA $PERIOD"): a quota <= 0 is "max", and a
// zero period is left out so the kernel keeps the current one.
func cpuMax(quota int64, period *uint64) string {
	p := uint64(0)
	if period != nil {
		p = *period
	}
	if quota == 0 && p == 0 {
		return ""
	}
	s := "max"
	if quota > 0 {
		s = strconv.FormatInt(quota, 10)
	}
	if p != 0 {
		s += " " + strconv.FormatUint(p, 10)
	}
	return s
}

// ioWeight converts a blkio weight (10..1000) to io.weight (1..10000), the
// linear mapping runc uses.
func ioWeight(w uint64) uint64 {
	if w == 0 {
		return 0
	}
	return 1 + (w-10)*9999/990
}

func setIO(dir string, b *specs.LinuxBlockIO) error {
	// BFQ's io.bfq.weight takes the v1 range unconverted, which is why runc
	// prefers it when present.
	bfq := fileExists(dir, "io.bfq.weight")
	if b.Weight != nil && *b.Weight != 0 {
		var err error
		if bfq {
			err = writeFile(dir, "io.bfq.weight", strconv.FormatUint(uint64(*b.Weight), 10))
		} else {
			err = writeFile(dir, "io.weight", strconv.FormatUint(ioWeight(uint64(*b.Weight)), 10))
		}
		if err != nil {
			return err
		}
	}
	for _, wd := range b.WeightDevice {
		if wd.Weight == nil {
			continue
		}
		var err error
		if bfq {
			err = writeFile(dir, "io.bfq.weight", fmt.Sprintf("%d:%d %d", wd.Major, wd.Minor, *wd.Weight))
		} else {
			err = writeFile(dir, "io.weight", fmt.Sprintf("%d:%d %d", wd.Major, wd.Minor, ioWeight(uint64(*wd.Weight))))
		}
		if err != nil {
			return err
		}
	}
	throttles := []struct {
		key  string
		devs []specs.LinuxThrottleDevice
	}{
		{"rbps", b.ThrottleReadBpsDevice},
		{"wbps", b.ThrottleWriteBpsDevice},
		{"riops", b.ThrottleReadIOPSDevice},
		{"wiops", b.ThrottleWriteIOPSDevice},
	}
	for _, t := range throttles {
		for _, d := range t.devs {
			// 0 means "no limit" in the spec, which io.max spells "max".
			rate := "max"
			if d.Rate != 0 {
				rate = strconv.FormatUint(d.Rate, 10)
			}
			if err := writeFile(dir, "io.max", fmt.Sprintf("%d:%d %s=%s", d.Major, d.Minor, t.key, rate)); err != nil {
				return err
			}
		}
	}
	return nil
}

// setUnified writes the spec's raw v2 key/value pairs, in key order so errors
// are reproducible. Keys are file names in the container's own directory.
func setUnified(dir string, unified map[string]string) error {
	keys := make([]string, 0, len(unified))
	for k := range unified {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" || strings.Contains(k, "/") || k == "." || k == ".." {
			return fmt.Errorf("unified resource %q: must be a file name in the cgroup directory", k)
		}
		if err := writeFile(dir, k, unified[k]); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				ctrl, _, _ := strings.Cut(k, ".")
				return fmt.Errorf("unified resource %q: controller %q not available in %s: %w", k, ctrl, filepath.Base(dir), err)
			}
			return err
		}
	}
	return nil
}
