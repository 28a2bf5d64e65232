package main

import "github.com/cubo-dev/cubo/runtime/container"

type startCmd struct {
	ID string `arg:"" name:"container-id" optional:""`
}

func (c *startCmd) Run(g *globals) error {
	ct, err := load(g, c.ID)
	if err != nil {
		return err
	}
	return ct.Start()
}

// load finds a container under the root.
func load(g *globals, id string) (*container.Container, error) {
	if err := container.ValidateID(id); err != nil {
		return nil, err
	}
	root, err := g.root()
	if err != nil {
		return nil, err
	}
	c, err := container.Load(root, id)
	if err != nil {
		return nil, err
	}
	c.Warn = func(err error) { g.log.Warn().Msg(err.Error()) }
	return c, nil
}
