package container

import (
	"context"

	"github.com/cubo-dev/cubo/runtime/cgroups"
)

// NotifyOOM watches the container's memory cgroup for OOM events (see
// cgroups.Manager.NotifyOOM): one value per event; the channel is closed once
// the cgroup is gone (on v2, once it has no processes) or ctx is done.
func (c *Container) NotifyOOM(ctx context.Context) (<-chan struct{}, error) {
	m, err := cgroups.Load(c.CgroupPaths)
	if err != nil {
		return nil, err
	}
	return m.NotifyOOM(ctx)
}
