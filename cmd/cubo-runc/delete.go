package main

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/cubo-dev/cubo/runtime/container"
)

type deleteCmd struct {
	Force bool   `short:"f" help:"Forcibly delete the container if it is still running (uses SIGKILL)."`
	ID    string `arg:"" name:"container-id" optional:""`
}

func (c *deleteCmd) Run(g *globals) error {
	ct, err := load(g, c.ID)
	if errors.Is(err, container.ErrNotExist) {
		// A stray dir without state (a create killed half way) is removed
		// either way; --force makes a missing container a success, as
		// podman repeats `delete --force`.
		if root, rerr := g.root(); rerr == nil {
			os.RemoveAll(filepath.Join(root, c.ID))
		}
		if c.Force {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	return ct.Delete(c.Force)
}
