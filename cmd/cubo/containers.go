package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cubo-dev/cubo/images"
	"github.com/cubo-dev/cubo/manager"
	"github.com/cubo-dev/cubo/manager/ociruntime"
)

// manager opens the container manager (with the image store) under the root dir.
func (g *globals) manager() (*manager.Manager, error) {
	st, err := g.store()
	if err != nil {
		return nil, err
	}
	return manager.New(g.root,
		manager.WithStore(st),
		manager.WithLogger(g.log),
		manager.WithRuntime(g.Runtime),
		manager.WithNetworkOpts(g.netOpts...),
	)
}

// containersUseImage is the image store's in-use check: rmb refuses an image a
// container (running or stopped) was created from.
func containersUseImage(root string) images.InUseFunc {
	return func(ctx context.Context, imageID string) (bool, error) {
		m, err := manager.New(root)
		if err != nil {
			return false, err
		}
		return m.ImageInUse(ctx, imageID)
	}
}

// exitWith ends cubo with a container process's status when err carries one, printing
// nothing: the status is the container's, not an error of cubo.
func exitWith(err error, restore func()) error {
	var ee *ociruntime.ExitError
	if errors.As(err, &ee) && err.Error() == ee.Error() {
		if restore != nil {
			restore()
		}
		os.Exit(ee.Status)
	}
	return err
}

// forEach runs fn on every ref, printing the ref of each success and joining the errors,
// one line per failed ref.
func forEach(refs []string, fn func(ref string) error) error {
	var errs []error
	for _, r := range refs {
		if err := fn(r); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Println(r)
	}
	return errors.Join(errs...)
}
