package main

import (
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
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		if ct.Status() == container.Stopped {
			return nil
		}
		if err := emit(); err != nil {
			return err
		}
		<-t.C
	}
}
