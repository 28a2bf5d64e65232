package main

import (
	"os"

	"github.com/cubo-dev/cubo/manager"
)

// The monitor is this binary in a hidden mode; it is dispatched before kong parses
// anything, like runc's init, so it never sees flag defaults or the root-dir resolution.
func init() {
	if len(os.Args) > 1 && os.Args[1] == manager.MonitorArg {
		manager.MonitorMain()
	}
}
