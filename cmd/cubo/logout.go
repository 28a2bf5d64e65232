package main

import (
	"context"
	"fmt"
)

type logoutCmd struct {
	Registry string `arg:"" optional:"" default:"docker.io" help:"Registry host[:port] (default docker.io)."`
}

// Run removes the saved credentials of the registry.
func (c *logoutCmd) Run(g *globals) error {
	st, err := g.store()
	if err != nil {
		return err
	}
	if err := st.Logout(context.Background(), c.Registry); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	fmt.Printf("Removing login credentials for %s\n", c.Registry)
	return nil
}
