package main

type pauseCmd struct {
	ID string `arg:"" name:"container-id" optional:""`
}

func (c *pauseCmd) Run(g *globals) error {
	ct, err := load(g, c.ID)
	if err != nil {
		return err
	}
	return ct.Pause()
}

type resumeCmd struct {
	ID string `arg:"" name:"container-id" optional:""`
}

func (c *resumeCmd) Run(g *globals) error {
	ct, err := load(g, c.ID)
	if err != nil {
		return err
	}
	return ct.Resume()
}
