package main

import (
	"context"
	"fmt"
	"os"
)

// systemCmd groups the commands about Cubo's root dir as a whole.
type systemCmd struct {
	Check systemCheckCmd `cmd:"" help:"Check the integrity of the image store, the containers and the mounts under the root dir."`
}

type systemCheckCmd struct {
	Repair bool `help:"Remove what nothing owns: orphan mounts and runtime state, leftovers of killed commands, unreferenced blobs and layers, iptables chains of deleted bridges; reinstall a network's missing rules. Records are never removed."`
}

// errCheckFailed makes cubo exit 1 after the findings were printed, without a message
// of its own: the findings are the output.
type errCheckFailed struct{ n int }

func (e errCheckFailed) Error() string { return fmt.Sprintf("system check: %d problems", e.n) }

// Run prints one finding per line on stdout (garbage prefixed "garbage: ") and fails
// when anything is damaged; with --repair, when damage remains after repairing.
func (c *systemCheckCmd) Run(g *globals) error {
	m, err := g.manager()
	if err != nil {
		return err
	}
	found, err := m.Check(context.Background(), c.Repair)
	if err != nil {
		return fmt.Errorf("system check: %w", err)
	}
	damaged := 0
	for _, f := range found {
		fmt.Fprintln(os.Stdout, f.String())
		if !f.Garbage && !f.Repaired {
			damaged++
		}
	}
	if damaged > 0 {
		return errCheckFailed{damaged}
	}
	return nil
}
