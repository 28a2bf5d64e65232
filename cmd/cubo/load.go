package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

type loadCmd struct {
	Input string `short:"i" placeholder:"FILE" help:"Read from FILE instead of stdin (OCI archive or docker-archive, optionally compressed)."`
}

// Run loads the archive and prints the images it added.
func (c *loadCmd) Run(g *globals) error {
	st, err := g.store()
	if err != nil {
		return err
	}
	var r io.Reader = os.Stdin
	if c.Input != "" && c.Input != "-" {
		f, err := os.Open(c.Input)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		defer f.Close()
		r = f
	}
	imgs, err := st.Load(context.Background(), r)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	for _, img := range imgs {
		if img.Name != "" {
			fmt.Printf("Loaded image: %s\n", img.Name)
		} else {
			fmt.Printf("Loaded image ID: %s\n", img.ID)
		}
	}
	return nil
}
