package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cubo-dev/cubo/manager"
	"github.com/cubo-dev/cubo/spec"
)

type inspectCmd struct {
	Refs []string `arg:"" name:"container" help:"Container IDs (or unique prefixes) or names."`
}

// inspectJSON is one container in inspect's output: the record, where its files are,
// and its runtime config.
type inspectJSON struct {
	*manager.Container
	Bundle string      `json:"bundle"`
	Log    string      `json:"log_path"`
	Config *specs.Spec `json:"config,omitempty"`
}

// Run prints a JSON array with one object per container.
func (c *inspectCmd) Run(g *globals) error {
	m, err := g.manager()
	if err != nil {
		return err
	}
	out := []inspectJSON{}
	var errs []error
	for _, r := range c.Refs {
		ct, err := m.Get(context.Background(), r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cfg, _ := spec.Load(ct.Dir())
		out = append(out, inspectJSON{Container: ct, Bundle: ct.Dir(), Log: ct.LogPath(), Config: cfg})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	return errors.Join(errs...)
}
