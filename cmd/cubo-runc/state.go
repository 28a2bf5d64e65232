package main

import (
	"encoding/json"
	"os"
	"time"

	"github.com/cubo-dev/cubo/runtime/container"
)

type stateCmd struct {
	ID string `arg:"" name:"container-id" optional:""`
}

// stateJSON is runc's `state` output.
type stateJSON struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

func stateOf(ct *container.Container) stateJSON {
	st := ct.Status()
	s := stateJSON{ID: ct.ID, Status: string(st), Bundle: ct.Bundle, Rootfs: ct.Rootfs, Created: ct.Created}
	if ct.Config != nil {
		s.OCIVersion = ct.Config.Version
		s.Annotations = ct.Config.Annotations
	}
	if st != container.Stopped {
		s.Pid = ct.InitPid
	}
	return s
}

func (c *stateCmd) Run(g *globals) error {
	ct, err := load(g, c.ID)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(stateOf(ct), "", "  ")
	if err != nil {
		return err
	}
	// runc prints no trailing newline.
	_, err = os.Stdout.Write(b)
	return err
}
