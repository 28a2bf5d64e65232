package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cubo-dev/cubo/manager"
	"github.com/cubo-dev/cubo/network"
	"github.com/cubo-dev/cubo/spec"
)

type inspectCmd struct {
	Refs []string `arg:"" name:"container" help:"Container IDs (or unique prefixes) or names."`
}

// inspectJSON is one container in inspect's output: the record, where its files are,
// its network attachment (address, MAC, gateway, ports; null once stopped) and its
// runtime config. "network" is the attachment; the record's mode string moves to
// "network_mode".
type inspectJSON struct {
	*manager.Container
	NetworkMode string              `json:"network_mode"`
	Network     *network.Attachment `json:"network"`
	Bundle      string              `json:"bundle"`
	Log         string              `json:"log_path"`
	Config      *specs.Spec         `json:"config,omitempty"`
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
		att, err := m.NetworkAttachment(ct.ID)
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
		out = append(out, inspectJSON{Container: ct, NetworkMode: ct.Network, Network: att, Bundle: ct.Dir(), Log: ct.LogPath(), Config: cfg})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	return errors.Join(errs...)
}
