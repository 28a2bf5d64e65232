package main

import (
	"context"
	"time"
)

type stopCmd struct {
	Force bool     `short:"f" help:"Send SIGKILL at once."`
	Time  int      `short:"t" default:"10" help:"Seconds to wait after the stop signal before SIGKILL."`
	Refs  []string `arg:"" name:"container" help:"Container IDs (or unique prefixes) or names."`
}

// Run stops each container and prints its reference.
func (c *stopCmd) Run(g *globals) error {
	m, err := g.manager()
	if err != nil {
		return err
	}
	return forEach(c.Refs, func(ref string) error {
		_, err := m.Stop(context.Background(), ref, time.Duration(c.Time)*time.Second, c.Force)
		return err
	})
}
