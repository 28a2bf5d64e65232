package main

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

type killCmd struct {
	All    bool   `short:"a" help:"Send the signal to all processes in the container."`
	ID     string `arg:"" name:"container-id" optional:""`
	Signal string `arg:"" optional:"" default:"SIGTERM" type:"raw" help:"Signal name or number (default SIGTERM)."`
}

func (c *killCmd) Run(g *globals) error {
	sig, err := parseSignal(c.Signal)
	if err != nil {
		return err
	}
	ct, err := load(g, c.ID)
	if err != nil {
		return err
	}
	return ct.Signal(sig, c.All)
}

// parseSignal accepts 9, KILL and SIGKILL, case-insensitive.
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("unknown signal %q", s)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, fmt.Errorf("unknown signal %q", s)
	}
	return sig, nil
}
