package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/cubo-dev/cubo/manager"
)

type runCmd struct {
	Blueprint string   `arg:"" help:"Image (blueprint) to run."`
	Command   []string `arg:"" optional:"" passthrough:"" help:"Command and arguments (default: the image's entrypoint and cmd). Flags after it belong to it."`

	Name        string   `help:"Name of the container (default: a random adjective_noun)."`
	Workdir     string   `short:"w" help:"Working directory inside the container."`
	Env         []string `short:"e" sep:"none" placeholder:"KEY=VALUE" help:"Set an environment variable (repeatable)."`
	Volume      []string `short:"v" sep:"none" placeholder:"HOST:CONT[:ro]" help:"Bind-mount a host path (repeatable)."`
	Publish     []string `short:"p" sep:"none" placeholder:"[IP:]HOST:CONT[/tcp|udp]" help:"Publish a container port on the host, on every host address (and 127.0.0.1) or on IP (repeatable; bridge networks only)."`
	Interactive bool     `short:"i" help:"Attach stdin/stdout/stderr (a pty when stdin is a terminal) and wait for the exit."`
	Detach      bool     `short:"d" help:"Run in the background (the default)."`
	Rm          bool     `help:"Remove the container when it exits."`
	User        string   `short:"u" placeholder:"USER[:GROUP]" help:"User (name or uid) and group to run as."`
	Entrypoint  *string  `help:"Override the image's entrypoint (empty clears it)."`
	Hostname    string   `help:"Container host name (default: the short ID)."`
	Memory      string   `short:"m" help:"Memory limit (e.g. 256m, 1g)."`
	Cpus        float64  `help:"CPU limit in CPUs (e.g. 0.5)."`
	PidsLimit   int64    `name:"pids-limit" help:"Maximum number of processes."`
	ReadOnly    bool     `name:"read-only" help:"Mount the root filesystem read-only."`
	Tmpfs       []string `sep:"none" placeholder:"DEST[:OPTS]" help:"Mount a tmpfs (repeatable)."`
	LogMaxSize  string   `name:"log-max-size" placeholder:"SIZE" help:"Rotate the container's log at this size, keeping one rotated file (default 10m; 0: no cap)."`
	Network     string   `default:"bridge" placeholder:"MODE" help:"Network: bridge (the default network, NAT to the outside), a network from 'cubo network create' (its containers reach each other by name), none (loopback only), host (the host's), or container:NAME (NAME's)."`
}

// Run creates and starts the container; detached it prints the ID, attached it exits
// with the container's status.
func (c *runCmd) Run(g *globals) error {
	if c.Detach && c.Interactive {
		return fmt.Errorf("--detach and --interactive are mutually exclusive")
	}
	m, err := g.manager()
	if err != nil {
		return err
	}
	tty := c.Interactive && term.IsTerminal(int(os.Stdin.Fd()))
	ctx := context.Background()
	cr, err := m.Create(ctx, manager.CreateOpts{
		Image: c.Blueprint, Name: c.Name, Command: c.Command, Entrypoint: c.Entrypoint,
		Workdir: c.Workdir, Env: c.Env, User: c.User, Hostname: c.Hostname,
		Volumes: c.Volume, Publish: c.Publish, Tmpfs: c.Tmpfs, Network: c.Network,
		Memory: c.Memory, CPUs: c.Cpus, PidsLimit: c.PidsLimit, ReadOnly: c.ReadOnly,
		AutoRemove: c.Rm, Interactive: c.Interactive, Tty: tty, LogMaxSize: c.LogMaxSize,
	})
	if err != nil {
		return err
	}
	if !c.Interactive {
		if err := cr.Start(ctx, nil); err != nil {
			return err
		}
		fmt.Println(cr.ID)
		return nil
	}
	attach := &manager.Attach{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	restore := func() {}
	if tty {
		old, err := term.MakeRaw(int(os.Stdin.Fd()))
		if err != nil {
			cr.Release()
			return fmt.Errorf("set terminal raw: %w", err)
		}
		restore = func() { _ = term.Restore(int(os.Stdin.Fd()), old) }
		attach.Resize = func(resize func()) {
			ch := make(chan os.Signal, 4)
			signal.Notify(ch, unix.SIGWINCH)
			go func() {
				for range ch {
					resize()
				}
			}()
		}
	}
	err = cr.Start(ctx, attach)
	err = exitWith(err, restore)
	restore()
	return err
}
