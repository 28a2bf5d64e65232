package main

import (
	"context"
	"os"

	"github.com/cubo-dev/cubo/manager"
)

type execCmd struct {
	Interactive bool     `short:"i" help:"Keep stdin open (otherwise the process reads /dev/null)."`
	Tty         bool     `short:"t" help:"Allocate a pseudo-terminal."`
	Env         []string `short:"e" sep:"none" placeholder:"KEY=VALUE" help:"Set an environment variable (repeatable)."`
	Workdir     string   `short:"w" help:"Working directory."`
	User        string   `short:"u" placeholder:"UID[:GID]" help:"Numeric user and group."`
	Ref         string   `arg:"" name:"container" help:"Container ID (or unique prefix) or name."`
	Command     []string `arg:"" passthrough:"" help:"Command and arguments."`
}

// Run runs the command in the running container and exits with its status.
func (c *execCmd) Run(g *globals) error {
	m, err := g.manager()
	if err != nil {
		return err
	}
	opts := &manager.ExecOpts{Tty: c.Tty, Cwd: c.Workdir, Env: c.Env, User: c.User}
	opts.Stdout, opts.Stderr = os.Stdout, os.Stderr
	if c.Interactive || c.Tty {
		opts.Stdin = os.Stdin
	}
	return exitWith(m.Exec(context.Background(), c.Ref, c.Command, opts), nil)
}
