package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

type updateCmd struct {
	Resources         string `short:"r" help:"Path to a file with the new LinuxResources as JSON, or - for stdin. Overrides the other flags."`
	Memory            string `help:"Memory limit (in bytes, or with a k/m/g suffix)."`
	MemorySwap        string `name:"memory-swap" help:"Total memory plus swap limit; -1 for unlimited."`
	MemoryReservation string `name:"memory-reservation" help:"Memory reservation (soft limit)."`
	KernelMemory      string `name:"kernel-memory" hidden:"" help:"Ignored, as by runc."`
	KernelMemoryTCP   string `name:"kernel-memory-tcp" hidden:"" help:"Ignored, as by runc."`
	CPUShare          string `name:"cpu-share" help:"CPU shares (relative weight)."`
	CPUPeriod         string `name:"cpu-period" help:"CPU CFS period in microseconds."`
	CPUQuota          string `name:"cpu-quota" help:"CPU CFS quota in microseconds."`
	CPURtPeriod       string `name:"cpu-rt-period" help:"CPU realtime period in microseconds."`
	CPURtRuntime      string `name:"cpu-rt-runtime" help:"CPU realtime runtime in microseconds."`
	CpusetCpus        string `name:"cpuset-cpus" help:"CPUs to use (e.g. 0-2,4)."`
	CpusetMems        string `name:"cpuset-mems" help:"Memory nodes to use."`
	PidsLimit         string `name:"pids-limit" help:"Maximum number of pids; -1 for unlimited."`
	BlkioWeight       string `name:"blkio-weight" help:"Block IO weight (10-1000)."`
	L3CacheSchema     string `name:"l3-cache-schema" hidden:""`
	MemBwSchema       string `name:"mem-bw-schema" hidden:""`
	ID                string `arg:"" name:"container-id" optional:""`
}

func (c *updateCmd) Run(g *globals) error {
	ct, err := load(g, c.ID)
	if err != nil {
		return err
	}
	r := &specs.LinuxResources{}
	if c.Resources != "" {
		var in io.Reader = os.Stdin
		if c.Resources != "-" {
			f, err := os.Open(c.Resources)
			if err != nil {
				return fmt.Errorf("open resources file: %w", err)
			}
			defer f.Close()
			in = f
		}
		if err := json.NewDecoder(in).Decode(r); err != nil {
			return fmt.Errorf("decode resources: %w", err)
		}
	} else if err := c.fromFlags(r); err != nil {
		return err
	}
	return ct.Update(r)
}

func (c *updateCmd) fromFlags(r *specs.LinuxResources) error {
	mem := &specs.LinuxMemory{}
	cpu := &specs.LinuxCPU{}
	var err error
	set := func(dst **int64, v, name string, sized bool) {
		if v == "" || err != nil {
			return
		}
		var n int64
		if sized {
			n, err = parseSize(v)
		} else {
			n, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			err = fmt.Errorf("invalid value for %s: %s", name, v)
			return
		}
		*dst = &n
	}
	setU := func(dst **uint64, v, name string) {
		if v == "" || err != nil {
			return
		}
		n, perr := strconv.ParseUint(v, 10, 64)
		if perr != nil {
			err = fmt.Errorf("invalid value for %s: %s", name, v)
			return
		}
		*dst = &n
	}
	set(&mem.Limit, c.Memory, "memory", true)
	set(&mem.Swap, c.MemorySwap, "memory-swap", true)
	set(&mem.Reservation, c.MemoryReservation, "memory-reservation", true)
	setU(&cpu.Shares, c.CPUShare, "cpu-share")
	setU(&cpu.Period, c.CPUPeriod, "cpu-period")
	set(&cpu.Quota, c.CPUQuota, "cpu-quota", false)
	setU(&cpu.RealtimePeriod, c.CPURtPeriod, "cpu-rt-period")
	set(&cpu.RealtimeRuntime, c.CPURtRuntime, "cpu-rt-runtime", false)
	if err != nil {
		return err
	}
	cpu.Cpus, cpu.Mems = c.CpusetCpus, c.CpusetMems
	if *mem != (specs.LinuxMemory{}) {
		r.Memory = mem
	}
	if cpu.Shares != nil || cpu.Period != nil || cpu.Quota != nil || cpu.RealtimePeriod != nil || cpu.RealtimeRuntime != nil || cpu.Cpus != "" || cpu.Mems != "" {
		r.CPU = cpu
	}
	if c.PidsLimit != "" {
		n, err := strconv.ParseInt(c.PidsLimit, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid value for pids-limit: %s", c.PidsLimit)
		}
		r.Pids = &specs.LinuxPids{Limit: &n}
	}
	if c.BlkioWeight != "" {
		n, err := strconv.ParseUint(c.BlkioWeight, 10, 16)
		if err != nil {
			return fmt.Errorf("invalid value for blkio-weight: %s", c.BlkioWeight)
		}
		w := uint16(n)
		r.BlockIO = &specs.LinuxBlockIO{Weight: &w}
	}
	return nil
}

// parseSize accepts a byte count with an optional b/k/m/g/t suffix
// (binary multiples, as runc's RAMInBytes), and -1.
func parseSize(v string) (int64, error) {
	if v == "-1" {
		return -1, nil
	}
	s := strings.ToLower(strings.TrimSpace(v))
	s = strings.TrimSuffix(s, "b")
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult != 1 {
			s = s[:n-1]
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	return int64(f * float64(mult)), nil
}
