package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/term"
)

type saveCmd struct {
	Images []string `arg:"" name:"image" help:"Images to save."`
	Output string   `short:"o" placeholder:"FILE" help:"Write to FILE instead of stdout."`
}

// Run writes an OCI archive; a file appears only once it is complete.
func (c *saveCmd) Run(g *globals) error {
	st, err := g.store()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if c.Output == "" || c.Output == "-" {
		if term.IsTerminal(int(os.Stdout.Fd())) {
			return errors.New("save: refusing to write an archive to a terminal, use -o FILE")
		}
		return st.Save(ctx, os.Stdout, c.Images...)
	}
	f, err := os.CreateTemp(filepath.Dir(c.Output), "."+filepath.Base(c.Output)+".tmp-")
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	defer os.Remove(f.Name())
	if err := st.Save(ctx, f, c.Images...); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := os.Rename(f.Name(), c.Output); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}
