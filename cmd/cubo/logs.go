package main

import (
	"context"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/manager"
)

type logsCmd struct {
	Follow     bool   `short:"f" help:"Follow the output until the container stops."`
	Tail       int    `short:"n" default:"-1" help:"Print only the last N lines (default all)."`
	Timestamps bool   `short:"t" help:"Prefix each line with its time."`
	Ref        string `arg:"" name:"container" help:"Container ID (or unique prefix) or name."`
}

// Run prints the container's logs.
func (c *logsCmd) Run(g *globals) error {
	m, err := g.manager()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	return m.Logs(ctx, c.Ref, manager.LogsOpts{Follow: c.Follow, Tail: c.Tail, Timestamps: c.Timestamps}, os.Stdout, os.Stderr)
}
