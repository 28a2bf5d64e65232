package main

import (
	"context"
	"fmt"
	"os"
)

type rmbCmd struct {
	Images []string `arg:"" name:"image" help:"Image names or IDs."`
	Force  bool     `short:"f" help:"Remove images used by containers (they stay as <none> until those containers are gone)."`
}

// Run removes the images and prints what was untagged and deleted.
func (c *rmbCmd) Run(g *globals) error {
	st, err := g.store()
	if err != nil {
		return err
	}
	res, err := st.Remove(context.Background(), c.Images, c.Force)
	if err != nil {
		return fmt.Errorf("remove images: %w", err)
	}
	for _, n := range res.Untagged {
		fmt.Fprintf(os.Stdout, "Untagged: %s\n", n)
	}
	for _, id := range res.Deleted {
		fmt.Fprintf(os.Stdout, "Deleted: %s\n", id)
	}
	fmt.Fprintf(os.Stdout, "Total reclaimed space: %s\n", humanSize(res.Freed))
	return nil
}
