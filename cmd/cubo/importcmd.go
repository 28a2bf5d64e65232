package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

type importCmd struct {
	File string `arg:"" help:"Rootfs tarball (plain, gzip or zstd); - reads stdin."`
	Name string `arg:"" help:"Image name, NAME[:TAG]."`
}

// Run imports the tarball as a one-layer image and prints its ID.
func (c *importCmd) Run(g *globals) error {
	st, err := g.store()
	if err != nil {
		return err
	}
	var r io.Reader = os.Stdin
	if c.File != "-" {
		f, err := os.Open(c.File)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		r = f
	}
	img, err := st.Import(context.Background(), r, c.Name)
	if err != nil {
		return fmt.Errorf("import %s: %w", c.File, err)
	}
	fmt.Println(img.ID)
	return nil
}
