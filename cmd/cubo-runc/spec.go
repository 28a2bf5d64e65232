package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cubo-dev/cubo/spec"
)

type specCmd struct {
	Bundle string `short:"b" default:"." help:"Path to the root of the bundle directory."`
	// runc's `spec --rootless` is a bool, but kong cannot have a command
	// flag named like the global --rootless; normalizeArgs turns a bare
	// `spec --rootless` into the global `--rootless=true`.
}

func (c *specCmd) Run(g *globals) error {
	path := filepath.Join(c.Bundle, spec.ConfigName)
	if _, err := os.Lstat(path); err == nil {
		//lint:ignore ST1005 runc's exact wording
		return errors.New("File " + spec.ConfigName + " exists. Remove it first")
	}
	s := spec.Default()
	if g.Rootless == "true" {
		s = spec.DefaultRootless()
	}
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
