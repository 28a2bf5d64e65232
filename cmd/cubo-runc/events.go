package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cubo-dev/cubo/runtime/cgroups"
	"github.com/cubo-dev/cubo/runtime/container"
)

type eventsCmd struct {
	Interval time.Duration `default:"5s" help:"Set the stats collection interval."`
	Stats    bool          `help:"Display the container's stats once, then exit."`
	ID       string        `arg:"" name:"container-id" optional:""`
}

// event is runc's events JSON line.
type event struct {
	Type string         `json:"type"`
	ID   string         `json:"id"`
	Data *cgroups.Stats `json:"data,omitempty"`
}

func (c *eventsCmd) Run(g *globals) error {
	if c.Interval <= 0 {
		return errors.New("duration interval must be greater than 0")
	}
	ct, err := load(g, c.ID)
	if err != nil {
		return err
	}
	if ct.Status() == container.Stopped {
		return fmt.Errorf("container with id %s is not running", ct.ID)
	}
	enc := json.NewEncoder(os.Stdout)
	emit := func() error {
		st, err := ct.Stats()
		if err != nil {
			return err
		}
		return enc.Encode(event{Type: "stats", ID: ct.ID, Data: st})
	}
	if c.Stats {
		return emit()
	}
	// Streaming: a stats line every interval, and an oom line whenever the
	// memory cgroup reports one, until the container stops. The watch is in
	// place before the first stats line, so an OOM after that line is seen.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	oom, err := ct.NotifyOOM(ctx)
	if err != nil {
		// Stats still work without a memory cgroup (a rootless container
		// may have none); runc would fail here instead.
		g.log.Warn().Msgf("no OOM notifications: %v", err)
		oom = nil
	}
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		if ct.Status() == container.Stopped {
			return nil
		}
		if err := emit(); err != nil {
			if ct.Status() == container.Stopped {
				// Stopped (and maybe deleted) while being sampled.
				return nil
			}
			return err
		}
	wait:
		for {
			select {
			case _, ok := <-oom:
				if !ok {
					// The memory cgroup is gone (v2: emptied), which
					// normally means the container has stopped.
					oom = nil
					if ct.Status() == container.Stopped {
						return nil
					}
					continue
				}
				if err := enc.Encode(event{Type: "oom", ID: ct.ID}); err != nil {
					return err
				}
			case <-t.C:
				break wait
			}
		}
	}
}
