package main

import "context"

type rmCmd struct {
	Force bool     `short:"f" help:"Kill and remove running containers."`
	Refs  []string `arg:"" name:"container" help:"Container IDs (or unique prefixes) or names."`
}

// Run removes each container and prints its reference.
func (c *rmCmd) Run(g *globals) error {
	m, err := g.manager()
	if err != nil {
		return err
	}
	return forEach(c.Refs, func(ref string) error {
		return m.Remove(context.Background(), ref, c.Force)
	})
}
