package main

import (
	"os"
	goruntime "runtime"

	"github.com/cubo-dev/cubo/runtime/container"
	"github.com/cubo-dev/cubo/runtime/initproc"
	// Joins namespaces by path before the Go runtime starts threads.
	_ "github.com/cubo-dev/cubo/runtime/nsenter"
)

// The container init is this same binary re-executed as "cubo-runc init".
// It is dispatched from a package init function, before main and kong, so
// the init pays for nothing it does not use.
func init() {
	// No heap profile is ever taken; sampling would still record stacks of the
	// first allocations and fault in the profiler's bucket table.
	goruntime.MemProfileRate = 0
	if len(os.Args) > 1 && os.Args[1] == "init" {
		initproc.Init()
	}
	if len(os.Args) > 1 && os.Args[1] == container.UsernsHoldArg {
		container.UsernsHold()
	}
}
