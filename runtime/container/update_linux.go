package container

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cubo-dev/cubo/runtime/cgroups"
)

// Update applies new resource limits to a live container and records them
// in its state, so later `state`-based consumers see the current values.
// Device rules are not touched (runc does not either).
func (c *Container) Update(r *specs.LinuxResources) error {
	lock, err := lockDir(c.dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	if c.Status() == Stopped {
		return ErrNotRunning
	}
	r.Devices = nil
	m, err := cgroups.Load(c.CgroupPaths)
	if err != nil {
		return err
	}
	if err := m.Set(r); err != nil {
		return fmt.Errorf("update cgroup resources: %w", err)
	}
	if c.Config.Linux == nil {
		c.Config.Linux = &specs.Linux{}
	}
	c.Config.Linux.Resources = mergeResources(c.Config.Linux.Resources, r)
	c.ConfigJSON = nil
	return c.save()
}

// Stats reads the container's cgroup statistics.
func (c *Container) Stats() (*cgroups.Stats, error) {
	m, err := cgroups.Load(c.CgroupPaths)
	if err != nil {
		return nil, err
	}
	return m.Stats()
}

// mergeResources overlays the set fields of upd on old.
func mergeResources(old, upd *specs.LinuxResources) *specs.LinuxResources {
	if old == nil {
		old = &specs.LinuxResources{}
	}
	out := *old
	if upd.Memory != nil {
		m := specs.LinuxMemory{}
		if out.Memory != nil {
			m = *out.Memory
		}
		u := upd.Memory
		if u.Limit != nil {
			m.Limit = u.Limit
		}
		if u.Reservation != nil {
			m.Reservation = u.Reservation
		}
		if u.Swap != nil {
			m.Swap = u.Swap
		}
		if u.Swappiness != nil {
			m.Swappiness = u.Swappiness
		}
		if u.DisableOOMKiller != nil {
			m.DisableOOMKiller = u.DisableOOMKiller
		}
		out.Memory = &m
	}
	if upd.CPU != nil {
		cp := specs.LinuxCPU{}
		if out.CPU != nil {
			cp = *out.CPU
		}
		u := upd.CPU
		if u.Shares != nil {
			cp.Shares = u.Shares
		}
		if u.Quota != nil {
			cp.Quota = u.Quota
		}
		if u.Period != nil {
			cp.Period = u.Period
		}
		if u.RealtimeRuntime != nil {
			cp.RealtimeRuntime = u.RealtimeRuntime
		}
		if u.RealtimePeriod != nil {
			cp.RealtimePeriod = u.RealtimePeriod
		}
		if u.Cpus != "" {
			cp.Cpus = u.Cpus
		}
		if u.Mems != "" {
			cp.Mems = u.Mems
		}
		out.CPU = &cp
	}
	if upd.Pids != nil {
		out.Pids = upd.Pids
	}
	if upd.BlockIO != nil {
		out.BlockIO = upd.BlockIO
	}
	if upd.HugepageLimits != nil {
		out.HugepageLimits = upd.HugepageLimits
	}
	if upd.Unified != nil {
		out.Unified = upd.Unified
	}
	return &out
}
